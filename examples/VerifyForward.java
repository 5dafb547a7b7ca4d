// The Java (17+) verifier of callbacks forwarded by qys-proxy (README "What your backend receives").
// tests: proxy/tests/forward.rs feeds it real deliveries on stdin (`java examples/VerifyForward.java`).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.HexFormat;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class VerifyForward {
    // snippet:start
    /** timestamp, signature: the X-Qys-Timestamp and X-Qys-Signature headers; rawBody: exact bytes. */
    static boolean verifyForward(String secret, String timestamp, String signature, byte[] rawBody) throws Exception {
        if (timestamp == null || signature == null || !timestamp.matches("[0-9]{1,15}")) return false;
        if (Math.abs(System.currentTimeMillis() - Long.parseLong(timestamp)) > 300_000) return false;
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        mac.update((timestamp + ".").getBytes(StandardCharsets.UTF_8));
        byte[] expected = ("sha256=" + HexFormat.of().formatHex(mac.doFinal(rawBody))).getBytes(StandardCharsets.UTF_8);
        return MessageDigest.isEqual(expected, signature.getBytes(StandardCharsets.UTF_8));
    }
    // snippet:end

    /** One line per delivery on stdin: timestamp, signature, base64 body, space-separated; prints ok or bad each. */
    public static void main(String[] args) throws Exception {
        String secret = System.getenv("FORWARD_SECRET");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.split(" ");
            System.out.println(verifyForward(secret, f[0], f[1], Base64.getDecoder().decode(f[2])) ? "ok" : "bad");
        }
    }
}

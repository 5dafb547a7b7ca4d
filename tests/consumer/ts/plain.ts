// The ES module entry in a plain browser project (tsconfig.plain.json).
import { qysSdk, type QysError } from 'qys-sdk-wasm';

const sdk = new qysSdk('/qys/proxy', { query: { token: 'ab1234' } });
sdk.personalSign('2603417854124281870', '13700000044', { signSuccessCb: () => sdk.destroy() })
  .then((frame: HTMLElement) => document.body.appendChild(frame))
  .catch((e: QysError) => console.log(e.kind, e.code));
sdk.free();

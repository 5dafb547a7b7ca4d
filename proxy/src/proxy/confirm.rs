//! The platform's confirmation of a flow's outcome, shared by the return page and `outcome`.

use serde_json::{json, Value};

use crate::platform::{Platform, PlatformError};
use crate::protocol::{self, Action};
use crate::token::FlowToken;

/// The success event and its data as the platform confirms them, or `None` when the platform
/// confirms no success (the return page reports `authFail`, `outcome` reports `pending`).
pub(super) async fn confirm(platform: &Platform, flow: &FlowToken) -> Result<Option<(&'static str, Value)>, PlatformError> {
    match flow.action {
        Action::PersonalSign | Action::EnterpriseSign => {
            let contract = platform.get("/v2/contract/detail", &[("contractId", &flow.subject)]).await?;
            let tenant_type = if flow.action == Action::PersonalSign { "PERSONAL" } else { "COMPANY" };
            let signed = contract["signatories"].as_array().into_iter().flatten().any(|s| {
                s["tenantType"] == tenant_type
                    && s["receiver"]["contact"] == flow.contact.as_str()
                    && s["status"] == "SIGNED"
            });
            Ok(signed.then(|| ("signSuccess", json!({"contractId": flow.subject}))))
        }
        Action::PersonalAuth => {
            let contact_type = if protocol::is_mobile(&flow.contact) { "MOBILE" } else { "EMAIL" };
            let r = platform
                .get("/v2/personalauth/result", &[("contact", &flow.contact), ("contactType", contact_type)])
                .await?;
            if r["realName"] != true {
                return Ok(None);
            }
            let mut info = json!({
                "username": r["username"],
                "mobile": r["mobile"],
                "cardNo": r["idCardNo"],
            });
            if r["mode"] == "BANK" {
                info["bankNo"] = r["bankNo"].clone();
                info["contact"] = r["bankMobile"].clone();
            }
            Ok(Some(("authSuccess", info)))
        }
        Action::EnterpriseAuth => {
            let r = platform.get("/companyauth/result", &[("companyName", &flow.subject)]).await?;
            if r["status"] != 2 {
                return Ok(None);
            }
            Ok(Some(("authSuccess", json!({
                "name": r["companyName"],
                "registerNo": r["registerNo"],
                "legalPerson": r["legalPerson"],
            }))))
        }
    }
}

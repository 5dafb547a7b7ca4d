//! How a flow is shown — an iframe, a full-page redirect, or the 契约锁 mini-program plugin — and
//! the per-action texts and permissions that go with it. Pure rules, decided once here for every
//! browser and tested natively.

use crate::params::Action;
use crate::value::{concat, has, pieces};

/// Where the platform's page is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// An `<iframe>` the page appends (seed 004's way).
    Iframe,
    /// The whole page goes to the platform and comes back (iOS WeChat, where an iframe cannot
    /// use cookies or the camera).
    Redirect,
    /// The 契约锁 mini-program plugin, opened through the mini-program hosting the web-view.
    MiniProgram,
}

impl Presentation {
    /// Every presentation.
    pub const ALL: [Presentation; 3] = [
        Presentation::Iframe,
        Presentation::Redirect,
        Presentation::MiniProgram,
    ];

    /// The wire and option name.
    pub fn name(self) -> &'static str {
        match self {
            Presentation::Iframe => "iframe",
            Presentation::Redirect => "redirect",
            Presentation::MiniProgram => "miniProgram",
        }
    }

    /// Parses a wire or option name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What the SDK knows of the page it runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Environment<'a> {
    /// `navigator.userAgent`.
    pub user_agent: &'a str,
    /// `window.__wxjs_environment === 'miniprogram'` (set by WeChat's JS-SDK in a web-view).
    pub mini_program_flag: bool,
}

impl Environment<'_> {
    /// Inside a mini-program `<web-view>`: WeChat's flag, or its user agent's `miniProgram` token.
    pub fn in_mini_program(&self) -> bool {
        self.mini_program_flag || contains_ignore_case(self.user_agent, "miniprogram")
    }

    /// WeChat on iOS, where every webview is WKWebView: cross-site iframes get no cookies and,
    /// on most versions, no camera.
    pub fn ios_wechat(&self) -> bool {
        let ua = self.user_agent;
        has(ua, "MicroMessenger") && ["iPhone", "iPad", "iPod"].iter().any(|d| has(ua, d))
    }
}

fn contains_ignore_case(haystack: &str, lower_needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(lower_needle.len())
        .any(|w| w.eq_ignore_ascii_case(lower_needle.as_bytes()))
}

/// The presentation of one call: the caller's choice (per call, else per instance) or, for
/// `auto` (`None`), the rule of the README's "In WeChat" section.
/// `mode` is personal auth's mode (`None` for the other actions).
pub fn choose(
    requested: Option<Presentation>,
    env: &Environment<'_>,
    action: Action,
    mode: Option<&str>,
) -> Presentation {
    if let Some(fixed) = requested {
        return fixed;
    }
    if env.in_mini_program() {
        Presentation::MiniProgram
    } else if env.ios_wechat() && may_need_camera(action, mode) {
        Presentation::Redirect
    } else {
        Presentation::Iframe
    }
}

/// Whether the flow may ask for the camera (face verification): signing (which can require
/// real-name authentication first) and personal auth other than by bank card.
pub fn allow_camera(action: Action, mode: Option<&str>) -> bool {
    action.is_sign() || (action == Action::PersonalAuth && mode != Some("BANK"))
}

/// Only personal auth in `FACE` or `DEFAULT` mode is known to need the camera for certain,
/// so only it leaves the page in iOS WeChat; signing stays in the iframe there.
fn may_need_camera(action: Action, mode: Option<&str>) -> bool {
    action == Action::PersonalAuth && matches!(mode, Some("FACE" | "DEFAULT"))
}

/// The iframe's accessible title.
pub fn frame_title(action: Action) -> &'static str {
    match action {
        Action::PersonalSign => "契约锁 个人签署",
        Action::EnterpriseSign => "契约锁 企业签署",
        Action::PersonalAuth => "契约锁 个人认证",
        Action::EnterpriseAuth => "契约锁 企业认证",
    }
}

/// The status text shown while the page leaves for the platform (redirect, mini-program).
pub fn status_text(action: Action) -> &'static str {
    if action.is_sign() {
        "正在打开签署页面…"
    } else {
        "正在打开认证页面…"
    }
}

/// The mini-program plugin's page for an action (`plugin://qyssdk-plugin/<page>`).
pub fn plugin_page(action: Action) -> &'static str {
    match action {
        Action::PersonalSign | Action::EnterpriseSign => "doc",
        Action::PersonalAuth => "personal-auth",
        Action::EnterpriseAuth => "enterprise-auth",
    }
}

/// Default mini-program page that opens the plugin (shipped in `miniprogram/`).
pub const DEFAULT_MINI_PROGRAM_PAGE: &str = "/pages/qys/qys";

/// Whether `page` can be a mini-program page path: absolute, no query or fragment, no empty,
/// `.` or `..` segments, plain characters only (it becomes part of a `wx.miniProgram.navigateTo`
/// URL).
pub fn is_mini_program_page(page: &str) -> bool {
    page.len() <= 256
        && page.strip_prefix("/").is_some_and(|path| {
            pieces(path, b'/').all(|segment| !matches!(segment, "" | "." | ".."))
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
        })
}

/// The URL the web-view asks the mini-program to open: the host page with the plugin page,
/// ticket and environment as query parameters.
pub fn mini_program_url(host_page: &str, action: Action, ticket: &str, env: &str) -> String {
    concat(&[
        host_page,
        "?page=",
        plugin_page(action),
        "&ticket=",
        &crate::wire::uri_encode(ticket),
        "&env=",
        &crate::wire::uri_encode(env),
    ])
}

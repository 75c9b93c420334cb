//! The rules vigil ships, embedded in the binary. A rules directory given at
//! run time may override any of them by id.

use crate::rules::{Origin, RuleFile};

const SHIPPED: [(&str, &str); 6] = [
    ("macos.lib.rhai", include_str!("../rules/macos.lib.rhai")),
    (
        "installer_network.rhai",
        include_str!("../rules/installer_network.rhai"),
    ),
    (
        "installer_network_legacy.rhai",
        include_str!("../rules/installer_network_legacy.rhai"),
    ),
    (
        "an0938_installer_postinstall.rhai",
        include_str!("../rules/an0938_installer_postinstall.rhai"),
    ),
    (
        "an0994_browser_execution.rhai",
        include_str!("../rules/an0994_browser_execution.rhai"),
    ),
    (
        "an1316_content_app_chain.rhai",
        include_str!("../rules/an1316_content_app_chain.rhai"),
    ),
];

pub fn shipped_rule_files() -> Vec<RuleFile> {
    SHIPPED
        .iter()
        .map(|(name, text)| RuleFile {
            path: format!("shipped:{name}"),
            text: text.to_string(),
            origin: Origin::Shipped,
        })
        .collect()
}

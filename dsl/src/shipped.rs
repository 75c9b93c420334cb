//! The rules vigil ships, embedded in the binary. A rules directory given at
//! run time may override any of them by id.

use crate::rules::{load_rules, Origin, RuleFile};

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

/// The shipped rules plus variations of the installer rule (other parent
/// names and downloaders) up to `total` rules, as a large deployment would
/// have: the many-rules set of the benchmarks.
pub fn shipped_with_variants(total: usize) -> Vec<RuleFile> {
    let mut files = shipped_rule_files();
    let base = load_rules(&files).rules.len();
    let mut text = String::new();
    for i in 0..total.saturating_sub(base) {
        text.push_str(&format!(
            "rule(#{{ id: \"variant-{i}\", query: `sequence by host.id with maxspan=30s [process where event.type == \"start\" and process.parent.name : (\"installer{i}\", \"helper{i}*\") and process.name : (\"sh\", \"bash\", \"zsh\")] by process.entity_id [network where process.name : (\"curl\", \"tool{i}\") and not cidrmatch(destination.ip, \"10.0.0.0/8\")] by process.parent.entity_id` }});\n"
        ));
    }
    files.push(RuleFile {
        path: "variants.rhai".into(),
        text,
        origin: Origin::User,
    });
    files
}

//! Whatever a `.yml` file in a rules directory holds, loading it gives
//! rules or errors with a place in the file: no panic. Real SigmaHQ rules,
//! cut and mutated, and random YAML-looking text.

use proptest::prelude::*;
use vigil_dsl::rules::{load_rules, Origin, RuleFile};

const SEED: &str = r#"title: seed
id: seed
logsource:
    product: macos
    category: process_creation
detection:
    selection:
        Image|endswith: '/osascript'
        CommandLine|contains|all:
            - ' -e '
            - 'x*y?z\*'
        ParentImage|re|i: '^/bin/(ba|z)sh$'
        ProcessId|gte: 10
        CommandLine|windash|base64offset|contains: ' -enc '
        User|exists: true
        CurrentDirectory|fieldref: Image
    filter_a:
        - CommandLine: null
        - ProcessId|lt: 5
    keywords:
        - 'evil'
    condition: selection and not 1 of filter_* or keywords
level: high
tags:
    - attack.t1059.002
"#;

fn load(text: &str) -> Result<(), TestCaseError> {
    let out = load_rules(&[RuleFile {
        path: "fuzz.yml".into(),
        text: text.into(),
        origin: Origin::User,
    }]);
    let lines = text.lines().count().max(1) + 1;
    for e in out.errors.iter().chain(&out.warnings) {
        prop_assert!(e.line <= lines, "{e} past the end of {text:?}");
    }
    Ok(())
}

#[test]
fn the_seed_loads() {
    let out = load_rules(&[RuleFile {
        path: "seed.yml".into(),
        text: SEED.into(),
        origin: Origin::User,
    }]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.rules.rules().len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cut_rules_never_panic(cut in 0usize..SEED.len()) {
        let mut end = cut;
        while !SEED.is_char_boundary(end) {
            end -= 1;
        }
        load(&SEED[..end])?;
    }

    #[test]
    fn mutated_rules_never_panic(at in 0usize..SEED.len(), insert in "[ -~\\n\\t]{0,8}", delete in 0usize..6) {
        let mut text = SEED.to_string();
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let end = (at + delete).min(text.len());
        let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        text.replace_range(at..end, &insert);
        load(&text)?;
    }

    #[test]
    fn random_yaml_never_panics(text in "([a-z|_*?\\\\ :'\\[\\],{}&!%@-]{0,12}\\n){0,12}") {
        load(&text)?;
    }
}

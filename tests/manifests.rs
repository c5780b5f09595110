//! spin-cron.toml is spin.toml plus the cron trigger, nothing else: keep them in step.

mod support;

#[test]
fn the_cron_manifest_is_the_plain_one_plus_the_cron_trigger() {
    let read = |name: &str| -> toml::Table {
        std::fs::read_to_string(support::root().join(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (plain, mut cron) = (read("spin.toml"), read("spin-cron.toml"));
    let triggers = cron["trigger"].as_table().unwrap().clone();
    let cron_triggers = triggers["cron"].as_array().unwrap();
    assert_eq!(cron_triggers.len(), 1);
    assert_eq!(cron_triggers[0]["component"].as_str(), Some("cleanup"));
    assert!(
        plain["trigger"].get("cron").is_none(),
        "spin.toml must start on a Spin without plugins"
    );
    cron["trigger"].as_table_mut().unwrap().remove("cron");
    assert_eq!(plain, cron);
}

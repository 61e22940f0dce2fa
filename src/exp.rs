pub fn on(name: &str) -> bool {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| std::env::var("TRUN_EXP").unwrap_or_default()).split(',').any(|x| x == name)
}

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn syntax_line(e: InventoryError) -> (usize, String) {
    match e {
        InventoryError::Syntax { line, message, .. } => (line, message),
        other => panic!("{other}"),
    }
}

const CSV: &str = "\
# kubectl export
address,node,namespace,pod,job,owner
10.10.0.10,gpu-07,ml,train-7,,alice
\"10.10.0.0/24\",\"gpu-07\",\"ml\",\"\",\"\",\"team-ml\"
fd00:10::10,gpu-07,ml,train-7,,alice
";

#[test]
fn csv_maps_addresses_and_prefixes_most_specific_first() {
    let inv = Inventory::parse("inv.csv", CSV).unwrap();
    assert_eq!(inv.len(), 3);
    let w = inv.lookup(ip("10.10.0.10")).unwrap();
    assert_eq!(w.pod.as_deref(), Some("train-7"));
    assert_eq!(w.job, None);
    assert_eq!(w.describe(), "pod ml/train-7 on gpu-07, owner alice");
    let net = inv.lookup(ip("10.10.0.99")).unwrap();
    assert_eq!(net.owner.as_deref(), Some("team-ml"));
    assert_eq!(net.pod, None);
    assert!(inv.lookup(ip("10.11.0.1")).is_none());
    // IPv4-mapped IPv6 is looked up as IPv4.
    assert!(inv.lookup(ip("::ffff:10.10.0.10")).is_some());
    assert!(inv.lookup(ip("fd00:10::10")).is_some());
}

#[test]
fn csv_columns_may_be_a_subset_in_any_order() {
    let text = "job,owner,cidr\n4711,bob,10.40.0.8\n";
    let inv = Inventory::parse("slurm.csv", text).unwrap();
    let w = inv.lookup(ip("10.40.0.8")).unwrap();
    assert_eq!(w.describe(), "job 4711, owner bob");
}

#[test]
fn an_address_listed_twice_keeps_both_values() {
    let text = "address,node,job,owner\n10.40.0.8,n8,4711,bob\n10.40.0.8,n8,4712,carol\n10.40.0.8,n8,4712,carol\n";
    let inv = Inventory::parse("slurm.csv", text).unwrap();
    let w = inv.lookup(ip("10.40.0.8")).unwrap();
    assert_eq!(w.node.as_deref(), Some("n8"));
    assert_eq!(w.job.as_deref(), Some("4711,4712"));
    assert_eq!(w.owner.as_deref(), Some("bob,carol"));
}

#[test]
fn csv_errors_name_the_line() {
    let cases = [
        (
            "address,pod\n10.0.0.1,a\nnot-an-ip,b\n",
            3,
            "not an address",
        ),
        ("address,pod\n10.0.0.1,a,b\n", 2, "3 field(s)"),
        ("# c\naddress,pdo\n", 2, "unknown column"),
        ("node,pod\ngpu,a\n", 1, "no address column"),
        ("address,pod\n10.0.0.1,\"a\n", 2, "not closed"),
        ("address,pod\n10.0.0.1,\n", 2, "no workload field"),
    ];
    for (text, line, what) in cases {
        let (l, m) = syntax_line(Inventory::parse("x.csv", text).unwrap_err());
        assert_eq!(l, line, "{text:?}: {m}");
        assert!(m.contains(what), "{text:?}: {m}");
    }
    let e = Inventory::parse("x.csv", "address,pod\n1.2.3\n").unwrap_err();
    assert!(e.to_string().starts_with("x.csv:2: "), "{e}");
}

#[test]
fn json_lines_and_arrays() {
    let lines = "{\"address\":\"10.10.0.10\",\"node\":\"gpu-07\",\"namespace\":\"ml\",\"pod\":\"train-7\",\"owner\":null}\n\
                 {\"ip\":\"10.40.0.8\",\"job\":4711,\"owner\":\"bob\"}\n";
    let inv = Inventory::parse("pods.json", lines).unwrap();
    assert_eq!(
        inv.lookup(ip("10.40.0.8")).unwrap().job.as_deref(),
        Some("4711")
    );
    assert_eq!(
        inv.lookup(ip("10.10.0.10")).unwrap().describe(),
        "pod ml/train-7 on gpu-07"
    );
    let array = "[\n {\"cidr\": \"10.10.0.0/16\", \"namespace\": \"ml\"},\n {\"address\": \"10.10.0.10\", \"pod\": \"p\"}\n]";
    let inv = Inventory::parse("pods.json", array).unwrap();
    assert_eq!(inv.len(), 2);
    assert_eq!(
        inv.lookup(ip("10.10.5.5")).unwrap().describe(),
        "namespace ml"
    );
}

#[test]
fn json_errors_name_the_line() {
    let lines =
        "{\"address\":\"10.0.0.1\",\"pod\":\"a\"}\n{\"address\":\"10.0.0.2\",\"podd\":\"b\"}\n";
    let (l, m) = syntax_line(Inventory::parse("p.json", lines).unwrap_err());
    assert_eq!(l, 2);
    assert!(m.contains("podd"), "{m}");
    let array = "[\n {\"address\": \"10.0.0.1\", \"pod\": \"a\"},\n {\"address\": \"10.0.0.x\", \"pod\": \"b\"}\n]";
    let (l, m) = syntax_line(Inventory::parse("p.json", array).unwrap_err());
    assert_eq!(l, 3, "{m}");
    assert!(m.contains("not an address"), "{m}");
}

#[test]
fn load_reports_a_missing_file() {
    let e = Inventory::load(Path::new("/nonexistent/inventory.csv")).unwrap_err();
    assert!(matches!(e, InventoryError::Read { .. }));
    assert!(e
        .to_string()
        .starts_with("/nonexistent/inventory.csv: cannot read"));
}

#[test]
fn a_broken_reload_keeps_the_inventory_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.csv");
    std::fs::write(&path, "address,pod\n10.0.0.1,a\n").unwrap();
    let shared = shared(Inventory::load(&path).unwrap());
    std::fs::write(&path, "address,pod\n10.0.0.1,b\n10.0.0.2,c\n").unwrap();
    assert_eq!(reload(&shared, &path).unwrap(), 2);
    let pod = |s: &SharedInventory| s.load().lookup(ip("10.0.0.1")).and_then(|w| w.pod.clone());
    assert_eq!(pod(&shared).as_deref(), Some("b"));
    std::fs::write(&path, "address,pod\n10.0.0.1,d\nbroken,e\n").unwrap();
    let e = reload(&shared, &path).unwrap_err();
    assert!(
        e.to_string()
            .ends_with(":3: \"broken\" is not an address or a CIDR"),
        "{e}"
    );
    assert_eq!(pod(&shared).as_deref(), Some("b"));
    assert_eq!(shared.load().len(), 2);
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(text in "\\PC{0,200}") {
        let _ = Inventory::parse("f", &text);
    }
}

mod harness;
#[test]
fn stub() {}

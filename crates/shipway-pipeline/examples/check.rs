//! Prints every problem of the workflow files given on the command line (development aid).
fn main() {
    for f in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let (_, problems) = shipway_pipeline::parse::parse_workflow(&f, &text);
        for p in problems {
            println!("{p}");
        }
    }
}

//! Prints the syntax tree of an expression (a development aid).
fn main() {
    for e in std::env::args().skip(1) {
        println!("{:#?}", brook_sql::parse_expr(&e));
    }
}

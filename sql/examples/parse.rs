//! Parses each argument and prints its tree's display, or the error.
fn main() {
    for sql in std::env::args().skip(1) {
        match brook_sql::parse(&sql) {
            Ok(stmts) => {
                for s in stmts {
                    println!("ok: {}", s.statement);
                }
            }
            Err(e) => println!("error: {e}"),
        }
    }
}

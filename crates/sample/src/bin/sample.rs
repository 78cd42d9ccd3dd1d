//! `sample --checkpoint PATH --prompt TEXT [...]`.
fn main() {
    todo!()
}

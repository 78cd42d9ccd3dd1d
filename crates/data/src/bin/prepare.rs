//! `prepare`: raw text in; a tokenizer and train/val token files out.
fn main() {
    todo!()
}

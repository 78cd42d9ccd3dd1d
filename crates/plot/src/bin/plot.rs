//! `plot runs/NAME [runs/OTHER ...] [--out FILE] [--x step|tokens|time] [--log]`.
fn main() {
    todo!()
}

//! `train --config configs/small.toml [--set section.key=value ...] [--resume runs/NAME]`.
fn main() {
    todo!()
}

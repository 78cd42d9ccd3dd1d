//! `Tensor`: a contiguous row-major `f32` buffer and its shape. No strides and no views:
//! an explicit copy is easier to see than a hidden one.

use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }
    }

    pub fn filled(shape: &[usize], value: f32) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![value; shape.iter().product()] }
    }

    /// Panics when `data.len()` is not the product of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Tensor {
        let numel: usize = shape.iter().product();
        assert_eq!(
            numel,
            data.len(),
            "Tensor::from_vec: shape {shape:?} holds {numel} values but data has {}",
            data.len()
        );
        Tensor { shape: shape.to_vec(), data }
    }

    /// Normal(0, std²) entries.
    pub fn randn(shape: &[usize], std: f32, rng: &mut Rng) -> Tensor {
        let data = (0..shape.iter().product()).map(|_| std * rng.normal()).collect();
        Tensor { shape: shape.to_vec(), data }
    }

    /// Uniform entries in [lo, hi).
    pub fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Tensor {
        let data = (0..shape.iter().product()).map(|_| lo + (hi - lo) * rng.uniform()).collect();
        Tensor { shape: shape.to_vec(), data }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

use ndarray::array;

use super::*;
use crate::kernel::ErasedKernel;
use crate::test_support::in_pool;

/// The textbook triple loop.
fn naive_product(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut c = Array2::zeros((n, n));
    for i in 0..n {
        for j in 0..n {
            c[[i, j]] = (0..n).map(|k| a[[i, k]] * b[[k, j]]).sum();
        }
    }
    c
}

fn product(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    multiply(a.view(), b.view(), &CancelToken::new()).unwrap()
}

fn assert_close(actual: f64, expected: f64, scale: f64) {
    assert!(
        (actual - expected).abs() <= 1e-9 * scale.max(1.0),
        "{actual} vs {expected}"
    );
}

#[test]
fn hand_computed_two_by_two() {
    let a = array![[1.0, 2.0], [3.0, 4.0]];
    let b = array![[5.0, 6.0], [7.0, 8.0]];
    let c = product(&a, &b);
    assert_eq!(c, array![[19.0, 22.0], [43.0, 50.0]]);
    assert_eq!(
        summarize(&c),
        MatmulOutput {
            n: 2,
            trace: 69.0,
            checksum: 134.0
        }
    );
}

#[test]
fn matches_the_triple_loop() {
    // 3 and 7 fit in one block; 130 spans three blocks, the last one partial.
    for n in [3, 7, 130] {
        let (a, b) = random_matrices(n, n as u64);
        let expected = naive_product(&a, &b);
        let actual = product(&a, &b);
        let scale = n as f64;
        for (x, y) in actual.iter().zip(&expected) {
            assert_close(*x, *y, scale);
        }
        let fast = summarize(&actual);
        let slow = summarize(&expected);
        assert_close(fast.trace, slow.trace, scale * scale);
        assert_close(fast.checksum, slow.checksum, scale * scale);
    }
}

#[test]
fn entries_are_uniform_in_minus_one_one() {
    let (a, b) = random_matrices(64, 9);
    assert!(a.iter().chain(&b).all(|x| (-1.0..1.0).contains(x)));
    let mean = (a.sum() + b.sum()) / (2.0 * 64.0 * 64.0);
    assert!(mean.abs() < 0.05, "{mean}");
    assert_ne!(a, b);
}

#[test]
fn result_is_bit_identical_across_thread_counts() {
    let run = || Matmul.run(r#"{"n": 200, "seed": 7}"#, &Context::default());
    let one = in_pool(1, run).unwrap();
    assert_eq!(one, in_pool(4, run).unwrap());
    assert_ne!(
        one,
        Matmul
            .run(r#"{"n": 200, "seed": 8}"#, &Context::default())
            .unwrap()
    );
}

#[test]
fn n_is_bounded() {
    assert_eq!(Matmul.validate(r#"{"n": 1}"#), Ok(()));
    assert_eq!(Matmul.validate(r#"{"n": 1024, "seed": 3}"#), Ok(()));
    assert_eq!(
        Matmul.validate(r#"{"n": 0}"#),
        Err(KernelError::invalid("n", "must be at least 1"))
    );
    assert_eq!(
        Matmul.validate(r#"{"n": 1025}"#),
        Err(KernelError::invalid("n", "must be at most 1024"))
    );
    assert!(matches!(
        Matmul.validate("[]"),
        Err(KernelError::InvalidParams { field, .. }) if field == "."
    ));
}

#[test]
fn one_by_one_and_cancellation() {
    let out = Matmul.run(r#"{"n": 1}"#, &Context::default()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["n"], 1);
    assert_eq!(value["trace"], value["checksum"]);

    let ctx = Context::default();
    ctx.cancel_token().cancel();
    assert_eq!(
        Matmul.run(r#"{"n": 100}"#, &ctx),
        Err(KernelError::Cancelled)
    );
}

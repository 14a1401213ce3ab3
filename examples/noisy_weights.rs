//! Gaussian noise on an exported model file, for measuring float weights
//! routecert did not build (docs/soft-routing.md): every stored float of
//! model.safetensors gets an independent N(0, σ²) draw added (a dense file:
//! every weight, zeros included; a sparse file: its nonzero values); the
//! other files are copied. exact.json no longer matches the tensors, so
//! `--weights OUT` reads the floats (natural units) and decides them by
//! rigorous intervals.
//!
//! cargo run --release --example noisy_weights -- IN_DIR OUT_DIR SIGMA [SEED]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: noisy_weights IN_DIR OUT_DIR SIGMA [SEED]".into());
    }
    let (input, output) = (Path::new(&args[1]), Path::new(&args[2]));
    let sigma: f64 = args[3].parse()?;
    let seed: u64 = args.get(4).map_or(Ok(1), |s| s.parse())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Box–Muller: one standard normal draw.
    let mut normal = move || {
        let u: f64 = 1.0 - rng.random::<f64>();
        let v: f64 = rng.random::<f64>();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    std::fs::create_dir_all(output)?;
    for entry in std::fs::read_dir(input)? {
        let entry = entry?;
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), output.join(entry.file_name()))?;
        }
    }
    let bytes = std::fs::read(input.join("model.safetensors"))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes)?;
    let st = SafeTensors::deserialize(&bytes)?;
    let mut noisy: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut touched = 0usize;
    for (name, view) in st.tensors() {
        let data = view.data();
        let out: Vec<u8> = match view.dtype() {
            Dtype::F64 => data
                .chunks_exact(8)
                .flat_map(|c| {
                    touched += 1;
                    let x = f64::from_le_bytes(c.try_into().expect("8 bytes"));
                    (x + sigma * normal()).to_le_bytes()
                })
                .collect(),
            Dtype::F32 => data
                .chunks_exact(4)
                .flat_map(|c| {
                    touched += 1;
                    let x = f32::from_le_bytes(c.try_into().expect("4 bytes"));
                    ((x as f64 + sigma * normal()) as f32).to_le_bytes()
                })
                .collect(),
            _ => data.to_vec(),
        };
        noisy.push((name, view.dtype(), view.shape().to_vec(), out));
    }
    let views = noisy
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let written = safetensors::serialize(views, metadata.metadata().clone())?;
    std::fs::write(output.join("model.safetensors"), written)?;
    println!(
        "{}: {touched} floats of {} tensors moved by N(0, {sigma}²) (seed {seed})",
        output.display(),
        noisy.len()
    );
    Ok(())
}

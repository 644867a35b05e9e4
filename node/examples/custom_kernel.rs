//! A node of one's own: the whole `taskmesh` node and command line, plus a task kind
//! `word_count` (`{"text": "…"}` → `{"words": n}`).
//!
//! ```text
//! cargo run --release -p taskmesh-node --example custom_kernel -- node --listen 127.0.0.1:8080
//! curl -s localhost:8080/v1/tasks -H 'content-type: application/json' \
//!   -d '{"kind": "word_count", "params": {"text": "to be or not to be"}}'
//! ```
//!
//! `docs/extending.md` walks through it.

use serde::{Deserialize, Serialize};
use taskmesh_node::Node;
use taskmesh_node::kernels::{Context, Kernel, KernelError, Params, check};

/// The `word_count` kind.
struct WordCount;

/// Its params. `deny_unknown_fields` makes a typo a `422 invalid_params` naming the
/// field, and a missing `text` is one too (serde names it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Text {
    text: String,
}

/// The longest text accepted, in bytes (the node's `--max-params-bytes` bounds it too).
const MAX_TEXT_BYTES: usize = 1 << 20;

impl Params for Text {
    fn check(&self) -> Result<(), KernelError> {
        check::at_most("text", self.text.len(), MAX_TEXT_BYTES)
    }
}

/// Its result.
#[derive(Serialize)]
struct Words {
    words: usize,
}

/// How many lines are counted between two looks at the cancel flag.
const LINES_PER_CHECK: usize = 1024;

impl Kernel for WordCount {
    const NAME: &'static str = "word_count";
    type Params = Text;
    type Output = Words;

    fn execute(&self, params: Text, ctx: &Context) -> Result<Words, KernelError> {
        let lines: Vec<&str> = params.text.lines().collect();
        let mut words = 0;
        for (done, chunk) in lines.chunks(LINES_PER_CHECK).enumerate() {
            ctx.check_cancelled()?;
            words += chunk
                .iter()
                .map(|l| l.split_whitespace().count())
                .sum::<usize>();
            let counted = (done + 1) * LINES_PER_CHECK;
            ctx.progress(
                counted.min(lines.len()) as f64 / lines.len() as f64,
                "counting",
            );
        }
        Ok(Words { words })
    }
}

fn main() -> anyhow::Result<()> {
    Node::new().kind(WordCount).run_cli()
}

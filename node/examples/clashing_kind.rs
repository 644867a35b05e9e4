//! A mistake the node refuses at start: a kind of one's own named like a built-in one
//! (`echo`). Running it fails with `kind `echo` is registered twice` before the node
//! opens its store or its port. The black-box tests run it to check exactly that.

use serde::{Deserialize, Serialize};
use taskmesh_node::Node;
use taskmesh_node::kernels::{Context, Kernel, KernelError, Params};

/// A second `echo`.
struct MyEcho;

/// Params and result: an empty object.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

impl Params for Nothing {}

impl Kernel for MyEcho {
    const NAME: &'static str = "echo";
    type Params = Nothing;
    type Output = Nothing;

    fn execute(&self, params: Nothing, _ctx: &Context) -> Result<Nothing, KernelError> {
        Ok(params)
    }
}

fn main() -> anyhow::Result<()> {
    Node::new().kind(MyEcho).run_cli()
}

//! The smallest Surge server: echo every message back.
//!
//! ```text
//! cargo run --release -p surge --example echo -- 127.0.0.1:9001
//! ```

use surge::echo::EchoHandler;
use surge::{Config, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let config = Config::builder().listen(addr.parse()?).build()?;
    // One handler per event loop; the echo handler keeps no state.
    let server = Server::start(config, |_loop| EchoHandler)?;
    println!("echo server on ws://{}", server.local_addrs()[0]);
    server.join(); // runs until killed; see the `surge` binary for graceful shutdown on signals
    Ok(())
}

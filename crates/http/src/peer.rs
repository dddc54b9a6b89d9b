//! Where a connection came from and arrived.

use std::net::SocketAddr;

/// Where a connection came from and arrived.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

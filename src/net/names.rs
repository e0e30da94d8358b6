//! Host names (asyncio's `getaddrinfo` and the name handling of
//! `create_connection` and `create_server`).
//!
//! A name lookup cannot be made non-blocking: libc's `getaddrinfo` may read
//! files, ask a DNS server and wait for the answer. So the loop does what
//! asyncio does: it runs the blocking call on one of its worker threads
//! (`run_in_executor`) and awaits the result. No resolver is written here.
//! Addresses that need no lookup (IP literals, `SocketAddr`s) skip the
//! thread entirely.
//!
//! What to connect to or listen on is anything that is [`ToAddrs`]: a
//! `SocketAddr` as before, `"localhost:8080"`, `("localhost", 8080)`, …

use std::ffi::{CStr, CString};
use std::fmt;
use std::future::Future;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll};

use crate::selectors::Selector;
use crate::{BaseSelectorEventLoop, IoHandlers};

/// What a [`ToAddrs`] value stands for: addresses known now, or a host
/// name and port to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addrs {
    /// Addresses that need no lookup (IP literals), in the order to try.
    Known(Vec<SocketAddr>),
    /// A host name to look up with `getaddrinfo`, and the port.
    Lookup {
        /// The name, as given (without brackets).
        host: String,
        /// The port.
        port: u16,
    },
}

/// Where to connect or listen: anything `create_connection`,
/// `create_server` and `create_datagram_endpoint` accept (the role of std's
/// `ToSocketAddrs`, without its blocking lookup). Implemented for
/// `SocketAddr` (and its V4/V6 halves), `(IpAddr, u16)`, `([u8; 4], u16)`,
/// `"host:port"` strings (`"localhost:8080"`, `"127.0.0.1:80"`,
/// `"[::1]:80"`), `(&str, u16)`, arrays, slices and `Vec`s of `SocketAddr`
/// (tried in their order), and references to all of these.
///
/// One thing std's trait allows does not work here: a generic parameter
/// cannot guide `"…".parse()` or `.into()`, so pass the string itself
/// (`"127.0.0.1:0"`) or a `SocketAddr` made with `SocketAddr::from`.
///
/// ```
/// use tulip::{Addrs, ToAddrs};
///
/// assert_eq!("127.0.0.1:80".to_addrs()?, Addrs::Known(vec!["127.0.0.1:80".parse().unwrap()]));
/// assert_eq!(
///     ("localhost", 8080).to_addrs()?,
///     Addrs::Lookup { host: "localhost".into(), port: 8080 }
/// );
/// assert_eq!("[::1]:0".to_addrs()?, Addrs::Known(vec!["[::1]:0".parse().unwrap()]));
/// let err = "localhost".to_addrs().unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("\"localhost\""));
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait ToAddrs {
    /// The addresses, or the name to look up.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput), naming the value, for
    /// a string that is not `host:port` (no port, a port that is not a
    /// number below 65536, an empty host) or an empty list.
    fn to_addrs(&self) -> io::Result<Addrs>;
}

impl ToAddrs for SocketAddr {
    fn to_addrs(&self) -> io::Result<Addrs> {
        Ok(Addrs::Known(vec![*self]))
    }
}

impl ToAddrs for SocketAddrV4 {
    fn to_addrs(&self) -> io::Result<Addrs> {
        SocketAddr::V4(*self).to_addrs()
    }
}

impl ToAddrs for SocketAddrV6 {
    fn to_addrs(&self) -> io::Result<Addrs> {
        SocketAddr::V6(*self).to_addrs()
    }
}

impl ToAddrs for (IpAddr, u16) {
    fn to_addrs(&self) -> io::Result<Addrs> {
        SocketAddr::from(*self).to_addrs()
    }
}

impl ToAddrs for (Ipv4Addr, u16) {
    fn to_addrs(&self) -> io::Result<Addrs> {
        SocketAddr::from(*self).to_addrs()
    }
}

impl ToAddrs for (Ipv6Addr, u16) {
    fn to_addrs(&self) -> io::Result<Addrs> {
        SocketAddr::from(*self).to_addrs()
    }
}

/// `([127, 0, 0, 1], 8080)`, as `SocketAddr::from` takes it.
impl ToAddrs for ([u8; 4], u16) {
    fn to_addrs(&self) -> io::Result<Addrs> {
        SocketAddr::from(*self).to_addrs()
    }
}

impl ToAddrs for [SocketAddr] {
    fn to_addrs(&self) -> io::Result<Addrs> {
        if self.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty list of addresses"));
        }
        Ok(Addrs::Known(self.to_vec()))
    }
}

impl<const N: usize> ToAddrs for [SocketAddr; N] {
    fn to_addrs(&self) -> io::Result<Addrs> {
        self.as_slice().to_addrs()
    }
}

impl ToAddrs for Vec<SocketAddr> {
    fn to_addrs(&self) -> io::Result<Addrs> {
        self.as_slice().to_addrs()
    }
}

impl ToAddrs for (&str, u16) {
    fn to_addrs(&self) -> io::Result<Addrs> {
        host_and_port(self.0, self.1, self.0)
    }
}

impl ToAddrs for (String, u16) {
    fn to_addrs(&self) -> io::Result<Addrs> {
        host_and_port(&self.0, self.1, &self.0)
    }
}

/// `"host:port"`: an IPv4 or bracketed IPv6 literal, or a name.
impl ToAddrs for str {
    fn to_addrs(&self) -> io::Result<Addrs> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(Addrs::Known(vec![addr]));
        }
        let Some((host, port)) = self.rsplit_once(':') else {
            return Err(invalid(format!("no port in the address {self:?} (expected host:port)")));
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid(format!("invalid port {port:?} in the address {self:?}")))?;
        host_and_port(host, port, self)
    }
}

impl ToAddrs for String {
    fn to_addrs(&self) -> io::Result<Addrs> {
        self.as_str().to_addrs()
    }
}

impl<T: ToAddrs + ?Sized> ToAddrs for &T {
    fn to_addrs(&self) -> io::Result<Addrs> {
        (**self).to_addrs()
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// A host (a literal, bracketed or not, or a name) and a port; `whole` is
/// what the user wrote, for the error message.
fn host_and_port(host: &str, port: u16, whole: &str) -> io::Result<Addrs> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.is_empty() {
        return Err(invalid(format!("no host in the address {whole:?}")));
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Addrs::Known(vec![SocketAddr::new(ip, port)]));
    }
    Ok(Addrs::Lookup { host: bare.to_owned(), port })
}

/// libc's `getaddrinfo` for `host` (blocking): the IPv4 and IPv6 addresses
/// of `host` with `port`, in the resolver's order, each once.
///
/// # Errors
///
/// [`NotFound`](io::ErrorKind::NotFound) naming the host when it has no
/// address (`EAI_NONAME`, `EAI_AGAIN`, `EAI_FAIL`, …);
/// [`InvalidInput`](io::ErrorKind::InvalidInput) for a name with a NUL
/// byte; the OS error for `EAI_SYSTEM`.
pub(crate) fn lookup_blocking(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let c_host =
        CString::new(host).map_err(|_| invalid(format!("the host name {host:?} contains a NUL byte")))?;
    // SAFETY: all-zero bytes are a valid `addrinfo` (null pointers, zero flags).
    let mut hints: libc::addrinfo = unsafe { mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    // One entry per address, not one per socket type.
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut libc::addrinfo = ptr::null_mut();
    // getaddrinfo is no `-1`-and-errno call (it returns an EAI_* code,
    // and sets errno only for EAI_SYSTEM), so `cvt` does not apply.
    // SAFETY: `c_host` is NUL-terminated, `hints` is a valid addrinfo,
    // `list` receives a list we free below; no service is asked for.
    let code = unsafe { libc::getaddrinfo(c_host.as_ptr(), ptr::null(), &hints, &mut list) };
    if code != 0 {
        return Err(lookup_error(host, code));
    }
    let mut addrs = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getaddrinfo returned, not freed yet.
        let info = unsafe { &*entry };
        if let Some(addr) = inet_addr(info.ai_addr, info.ai_addrlen, port) {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        entry = info.ai_next;
    }
    // SAFETY: `list` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(list) };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("failed to resolve {host:?}: no IPv4 or IPv6 address"),
        ));
    }
    Ok(addrs)
}

/// The IP address in a `sockaddr` of `len` bytes, with `port`; `None` for
/// other families.
fn inet_addr(addr: *const libc::sockaddr, len: libc::socklen_t, port: u16) -> Option<SocketAddr> {
    if addr.is_null() {
        return None;
    }
    let len = len as usize;
    // SAFETY: getaddrinfo's `ai_addr` points to `ai_addrlen` readable bytes,
    // at least a `sockaddr` header; read unaligned, as a copy.
    let family = c_int_from(unsafe { ptr::read_unaligned(addr) }.sa_family);
    if family == libc::AF_INET && len >= mem::size_of::<libc::sockaddr_in>() {
        // SAFETY: the family and length say it is a `sockaddr_in`.
        let sin = unsafe { ptr::read_unaligned(addr.cast::<libc::sockaddr_in>()) };
        let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if family == libc::AF_INET6 && len >= mem::size_of::<libc::sockaddr_in6>() {
        // SAFETY: the family and length say it is a `sockaddr_in6`.
        let sin6 = unsafe { ptr::read_unaligned(addr.cast::<libc::sockaddr_in6>()) };
        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
    } else {
        None
    }
}

fn c_int_from(family: libc::sa_family_t) -> libc::c_int {
    libc::c_int::from(family)
}

/// The error for getaddrinfo's `code`, naming `host`.
fn lookup_error(host: &str, code: libc::c_int) -> io::Error {
    if code == libc::EAI_SYSTEM {
        let os = io::Error::last_os_error();
        return io::Error::new(os.kind(), format!("failed to resolve {host:?}: {os}"));
    }
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated string.
    let reason = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }.to_string_lossy().into_owned();
    let kind = match code {
        libc::EAI_SERVICE | libc::EAI_FAMILY | libc::EAI_SOCKTYPE | libc::EAI_BADFLAGS => {
            io::ErrorKind::InvalidInput
        }
        libc::EAI_MEMORY => io::ErrorKind::OutOfMemory,
        // No such name (EAI_NONAME), no address for it (EAI_NODATA), no
        // answer now (EAI_AGAIN) or ever (EAI_FAIL): the name was not found.
        _ => io::ErrorKind::NotFound,
    };
    io::Error::new(kind, format!("failed to resolve {host:?}: {reason}"))
}

/// The future of [`getaddrinfo`](BaseSelectorEventLoop::getaddrinfo): the
/// addresses, ready at once for a literal, else from a worker thread. It
/// does not borrow the loop: a task may keep it.
#[must_use = "futures do nothing unless awaited"]
pub struct GetAddrInfo {
    /// Known without a lookup (or refused before one).
    ready: Option<io::Result<Vec<SocketAddr>>>,
    /// The lookup running on a worker thread.
    lookup: Option<crate::Future<io::Result<Vec<SocketAddr>>>>,
}

impl Future for GetAddrInfo {
    type Output = io::Result<Vec<SocketAddr>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(ready) = self.ready.take() {
            return Poll::Ready(ready);
        }
        let Some(lookup) = self.lookup.as_mut() else {
            return Poll::Ready(Err(invalid("getaddrinfo polled after completion".to_owned())));
        };
        match Pin::new(lookup).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => {
                self.lookup = None;
                // The executor's error (closed loop, a panic), or the lookup's.
                Poll::Ready(outcome.and_then(|found| found))
            }
        }
    }
}

impl fmt::Debug for GetAddrInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetAddrInfo").field("looking_up", &self.lookup.is_some()).finish()
    }
}

/// What could not be reached, for the error of trying several addresses.
/// One failure is that failure, unchanged.
pub(crate) fn all_failed(what: &str, mut failures: Vec<(SocketAddr, io::Error)>) -> io::Error {
    match failures.len() {
        0 => return io::Error::new(io::ErrorKind::NotFound, format!("{what}: no address to try")),
        1 => {
            if let Some((_, err)) = failures.pop() {
                return err;
            }
        }
        _ => {}
    }
    let kind = failures.first().map_or(io::ErrorKind::Other, |(_, err)| err.kind());
    let same_kind = failures.iter().all(|(_, err)| err.kind() == kind);
    let list: Vec<String> = failures.iter().map(|(addr, err)| format!("{addr}: {err}")).collect();
    io::Error::new(
        if same_kind { kind } else { io::ErrorKind::Other },
        format!("{what}: every address failed ({})", list.join("; ")),
    )
}

/// Names on the selector loop (asyncio's `getaddrinfo`).
impl<S: Selector<IoHandlers> + 'static> BaseSelectorEventLoop<S> {
    /// Looks up `host` (asyncio's `getaddrinfo`): its IPv4 and IPv6
    /// addresses, each with `port`, in the order the system resolver gives
    /// (which is the order to try them in), each once. An IP literal
    /// (`"127.0.0.1"`, `"::1"`, `"[::1]"`) is its own answer at once;
    /// anything else is given to libc's `getaddrinfo` on one of the loop's
    /// worker threads ([`run_in_executor`](Self::run_in_executor)), so the
    /// loop keeps running while the resolver waits.
    ///
    /// Unlike asyncio's, which returns `(family, type, proto, canonname,
    /// sockaddr)` tuples, the answer is the addresses alone.
    ///
    /// ```
    /// use tulip::selectors::Backend;
    ///
    /// let event_loop = tulip::new_event_loop(Backend::Poll)?;
    /// let addrs = event_loop.run_until_complete(event_loop.getaddrinfo("localhost", 8080))??;
    /// assert!(addrs.iter().all(|addr| addr.ip().is_loopback() && addr.port() == 8080));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) with a message naming `host`
    /// (`failed to resolve "nosuch.invalid": Name or service not known`) when
    /// it has no address; [`InvalidInput`](io::ErrorKind::InvalidInput) for
    /// an empty name or one with a NUL byte; the errors of
    /// [`run_in_executor`](Self::run_in_executor) (a closed loop).
    pub fn getaddrinfo(&self, host: &str, port: u16) -> GetAddrInfo {
        match host_and_port(host, port, host) {
            Ok(addrs) => self.resolve(addrs),
            Err(err) => GetAddrInfo { ready: Some(Err(err)), lookup: None },
        }
    }

    /// A TCP connection to the first of `addr`'s addresses that accepts
    /// one, looking a name up first.
    pub(crate) async fn connect_any(
        &self,
        addr: &(impl ToAddrs + ?Sized),
    ) -> io::Result<std::net::TcpStream> {
        let addrs = addr.to_addrs()?;
        let what = match &addrs {
            Addrs::Lookup { host, port } => format!("cannot connect to {host}:{port}"),
            Addrs::Known(_) => "cannot connect".to_owned(),
        };
        let mut failures = Vec::new();
        for addr in self.resolve(addrs).await? {
            match self.sock_connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => failures.push((addr, err)),
            }
        }
        Err(all_failed(&what, failures))
    }

    /// The addresses of `addrs`: as they are, or looked up on a worker thread.
    pub(crate) fn resolve(&self, addrs: Addrs) -> GetAddrInfo {
        match addrs {
            Addrs::Known(known) => GetAddrInfo { ready: Some(Ok(known)), lookup: None },
            Addrs::Lookup { host, port } => {
                let lookup = self.run_in_executor(move || lookup_blocking(&host, port));
                GetAddrInfo { ready: None, lookup: Some(lookup) }
            }
        }
    }
}

/// The addresses of `addrs`, looking a name up on this thread: for the
/// synchronous `create_server`, made once, at start-up.
pub(crate) fn resolve_blocking(addrs: &(impl ToAddrs + ?Sized)) -> io::Result<Vec<SocketAddr>> {
    match addrs.to_addrs()? {
        Addrs::Known(known) => Ok(known),
        Addrs::Lookup { host, port } => lookup_blocking(&host, port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_split_into_host_and_port() {
        let known = |s: &str| Addrs::Known(vec![s.parse().unwrap()]);
        assert_eq!("10.0.0.1:9".to_addrs().unwrap(), known("10.0.0.1:9"));
        assert_eq!("[fe80::1]:9".to_addrs().unwrap(), known("[fe80::1]:9"));
        assert_eq!(("::1", 7).to_addrs().unwrap(), known("[::1]:7"));
        assert_eq!(("[::1]", 7).to_addrs().unwrap(), known("[::1]:7"));
        assert_eq!(
            "example.org:443".to_addrs().unwrap(),
            Addrs::Lookup { host: "example.org".into(), port: 443 }
        );
        assert_eq!(([127, 0, 0, 1], 5).to_addrs().unwrap(), known("127.0.0.1:5"));
        for bad in ["localhost", "localhost:http", "localhost:65536", ":80", "[]:80", "a:-1"] {
            let err = bad.to_addrs().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert_eq!(Vec::<SocketAddr>::new().to_addrs().unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn localhost_resolves_on_this_thread() {
        let addrs = lookup_blocking("localhost", 80).unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80), "{addrs:?}");
        let err = lookup_blocking("bad\0name", 80).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}

//! Plugins in dynamic libraries: the declaration a library exports, the
//! fingerprint that decides whether the server may use it, and the guards
//! that keep a plugin's panics and runtime needs on its side of the line.
//!
//! A plugin library calls [`declare_plugin!`](crate::declare_plugin) once.
//! That exports a [`PluginDeclaration`] under the symbol
//! [`DECLARATION_SYMBOL`]: an ABI version, a fingerprint, and the function
//! that registers the library's factories. The server's loader reads the ABI
//! version first and the fingerprint second, and calls nothing in the
//! library unless both equal its own.
//!
//! # The compatibility rule
//!
//! Rust has no stable ABI, so the server and a plugin pass Rust values
//! (`String`, `serde_json::Value`, trait objects) to each other only because
//! both were compiled from the same sources by the same compiler. The
//! [`fingerprint`] records exactly that: the SDK version (which pins the
//! versions of tracing, serde_json and chrono, whose types cross the line),
//! the compiler, the target, the SDK features that change types, and the
//! sizes of the types that cross. A plugin is built with the same SDK
//! version and the same `rustc` as the server, or it is refused.
//!
//! # What the guards do
//!
//! A library carries its own copies of `std`, tokio and tracing. So that
//! a plugin can use them as it would in any program, the code
//! [`declare_plugin!`](crate::declare_plugin) generates, which runs inside
//! the library:
//! - points the library's `tracing` at the server's dispatcher, so the
//!   plugin's events land in the server's log;
//! - starts a tokio runtime of the library's own (two worker threads named
//!   `fastlane-plugin`, built with the library's tokio, kept until the
//!   process exits) and enters it around every call into the plugin and
//!   every poll of a future it returned. Timers, sockets and tasks the
//!   plugin makes (`tokio::time::sleep`, `tokio::spawn`, reqwest, hyper…)
//!   register with that runtime, whose threads drive them; the server's
//!   task that awaits the plugin's future is woken through the standard
//!   library's `Waker`, which both sides share. No tokio value crosses the
//!   line;
//! - catches panics inside the library (a panic cannot unwind from one copy
//!   of `std` into another) and turns them into [`ErrorKind::Permanent`]
//!   errors, so a panicking plugin fails one execution, not the server. A
//!   task the plugin spawned runs on the library's runtime, where tokio
//!   catches its panic and ends that task only.
//!
//! A plugin's futures are polled by the server's worker threads, so they
//! must not block: a blocking call holds a server thread (and, in
//! `follow`, the task that also waits for the run's exit).
//! [`ErrorKind::Permanent`]: crate::ErrorKind::Permanent

mod guard;

use std::fmt;

use crate::error::PluginError;
use crate::registry::Registry;

pub use guard::register_guarded;

/// The layout of [`PluginDeclaration`]. Its first field is this number in
/// every version, so a loader can always read it.
pub const ABI_VERSION: u32 = 1;

/// The symbol under which a plugin library exports its declaration.
pub const DECLARATION_SYMBOL: &str = "FASTLANE_PLUGIN_DECLARATION";

/// What the server hands a library when it registers it.
#[derive(Debug, Clone)]
pub struct Host {
    /// The server's tracing dispatcher; the plugin logs through it.
    pub dispatch: tracing::Dispatch,
}

impl Host {
    /// The calling thread's tracing dispatcher.
    pub fn current() -> Self {
        Self {
            dispatch: tracing::dispatcher::get_default(Clone::clone),
        }
    }
}

/// The function a library registers its factories with.
pub type RegisterFn = fn(&mut Registry, &Host) -> Result<(), PluginError>;

/// What a plugin library exports (see [`declare_plugin!`](crate::declare_plugin)).
///
/// The first two fields are C-compatible and stay where they are in every
/// ABI version: a `u32` version, then a pointer to a NUL-terminated
/// fingerprint. Nothing after them is read unless both match.
#[repr(C)]
pub struct PluginDeclaration {
    /// [`ABI_VERSION`] of the SDK the library was built with.
    pub abi_version: u32,
    /// The first byte of the library's NUL-terminated [`fingerprint`].
    pub fingerprint: &'static u8,
    /// Registers the library's factories (with their guards).
    pub register: RegisterFn,
}

impl PluginDeclaration {
    /// The declaration of a library built with this SDK.
    pub const fn new(register: RegisterFn) -> Self {
        Self {
            abi_version: ABI_VERSION,
            fingerprint: &FINGERPRINT.0[0],
            register,
        }
    }
}

impl fmt::Debug for PluginDeclaration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginDeclaration")
            .field("abi_version", &self.abi_version)
            .finish_non_exhaustive()
    }
}

/// Exports the plugin declaration of a library. Call it once, at the root
/// of a `cdylib` crate, with the library's registration function:
///
/// ```ignore
/// fn register(registry: &mut fastlane_sdk::Registry) -> Result<(), fastlane_sdk::PluginError> {
///     registry.register_executor(Box::new(MyExecutorFactory))
/// }
/// fastlane_sdk::declare_plugin!(register);
/// ```
///
/// Every factory the function registers is wrapped in the guards described
/// in [`dynamic`](crate::dynamic).
#[macro_export]
macro_rules! declare_plugin {
    ($register:path) => {
        /// fastlane's entry point into this library.
        #[unsafe(no_mangle)]
        pub static FASTLANE_PLUGIN_DECLARATION: $crate::dynamic::PluginDeclaration =
            $crate::dynamic::PluginDeclaration::new(|registry, host| {
                $crate::dynamic::register_guarded(registry, host, $register)
            });
    };
}

/// The fingerprint of this build of the SDK, for example
/// `fastlane-sdk 0.4.0; abi 1; rustc 1.95.0 (…); x86_64-unknown-linux-gnu; features []; sizes …`.
pub fn fingerprint() -> &'static str {
    let bytes = &FINGERPRINT.0;
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..len]).unwrap_or("(fingerprint is not UTF-8)")
}

const CAPACITY: usize = 512;

/// The fingerprint as NUL-terminated bytes, built at compile time.
struct Fingerprint([u8; CAPACITY]);

static FINGERPRINT: Fingerprint = Fingerprint::build();

/// SDK features that change the types crossing the line. (`testing` only
/// adds functions, so a plugin built with it still fits a server without.)
const ABI_FEATURES: &str = "";

impl Fingerprint {
    const fn build() -> Self {
        use std::mem::size_of;
        let mut w = Writer {
            buf: [0; CAPACITY],
            len: 0,
        };
        w.text("fastlane-sdk ");
        w.text(env!("CARGO_PKG_VERSION"));
        w.text("; abi ");
        w.number(ABI_VERSION as usize);
        w.text("; ");
        w.text(env!("FASTLANE_SDK_RUSTC"));
        w.text("; ");
        w.text(env!("FASTLANE_SDK_TARGET"));
        w.text("; features [");
        w.text(ABI_FEATURES);
        w.text("]; sizes");
        // The types the server and a plugin hand each other. A difference in
        // any of them (a dependency built with other features, say) means the
        // two do not agree on layout.
        let sizes = [
            size_of::<Registry>(),
            size_of::<PluginError>(),
            size_of::<crate::ExecutionSpec>(),
            size_of::<crate::ExecutorStatus>(),
            size_of::<crate::Job>(),
            size_of::<crate::Execution>(),
            size_of::<crate::Delivery>(),
            size_of::<serde_json::Value>(),
            size_of::<serde_json::Map<String, serde_json::Value>>(),
            size_of::<chrono::DateTime<chrono::Utc>>(),
            size_of::<tracing::Dispatch>(),
            size_of::<tracing::Span>(),
        ];
        let mut i = 0;
        while i < sizes.len() {
            w.text(" ");
            w.number(sizes[i]);
            i += 1;
        }
        Self(w.buf)
    }
}

/// Appends text to a fixed buffer at compile time, always leaving a NUL.
struct Writer {
    buf: [u8; CAPACITY],
    len: usize,
}

impl Writer {
    const fn text(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() && self.len + 1 < CAPACITY {
            self.buf[self.len] = bytes[i];
            self.len += 1;
            i += 1;
        }
    }

    const fn number(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while count > 0 && self.len + 1 < CAPACITY {
            count -= 1;
            self.buf[self.len] = digits[count];
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_names_version_compiler_and_target() {
        let print = fingerprint();
        assert!(
            print.starts_with(&format!(
                "fastlane-sdk {}; abi 1; rustc ",
                crate::SDK_VERSION
            )),
            "{print}"
        );
        assert!(print.contains(env!("FASTLANE_SDK_TARGET")), "{print}");
        assert!(print.contains("; sizes "), "{print}");
    }

    #[test]
    fn the_declaration_points_at_the_nul_terminated_fingerprint() {
        fn register(_: &mut Registry, _: &Host) -> Result<(), PluginError> {
            Ok(())
        }
        static DECLARATION: PluginDeclaration = PluginDeclaration::new(register);
        assert_eq!(DECLARATION.abi_version, ABI_VERSION);
        let start: *const u8 = DECLARATION.fingerprint;
        assert_eq!(start, FINGERPRINT.0.as_ptr());
        assert_eq!(FINGERPRINT.0[fingerprint().len()], 0);
    }
}

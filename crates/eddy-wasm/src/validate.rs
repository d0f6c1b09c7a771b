//! Checks a component against the processor world before anything runs:
//! it may import only Eddy's `host`/`types`/`state`/`timers` interfaces, the functions the
//! WASI shims of [`crate::wasi`] implement, and anything from the WASI
//! packages whose calls the host refuses (filesystem, sockets, HTTP); it
//! must export `init` and `process`. Each refusal names the offending
//! import or the missing export.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::error::{Error, RefusedImport, Result};
use crate::wasi::{SHIMS, denied_package};

/// The processor world's own interfaces and the functions they offer.
const EDDY_INTERFACES: &[(&str, &[&str])] = &[
    ("eddy:processor/types", &[]),
    ("eddy:processor/host", &["log", "counter-add"]),
    ("eddy:processor/state", &["get", "put", "delete", "scan"]),
    (
        "eddy:processor/timers",
        &["watermark", "advance", "register", "cancel"],
    ),
];
const EDDY_VERSION_PREFIX: &str = "0.2.";
const WASI_VERSION_PREFIX: &str = "0.2.";
const EXPORTS: &[&str] = &["init", "process"];

pub(crate) fn check(engine: &Engine, component: &Component) -> Result<()> {
    let ty = component.component_type();
    let mut refused = Vec::new();
    for (name, item) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            refused.push(refusal(
                name,
                "a bare import; Eddy offers only whole interfaces",
            ));
            continue;
        };
        let offered = match offered_functions(name)? {
            Ok(Offered::Only(offered)) => offered,
            Ok(Offered::AllRefused) => continue,
            Err(reason) => {
                refused.push(refusal(name, reason));
                continue;
            }
        };
        for (member, item) in instance.exports(engine) {
            if matches!(item.ty, ComponentItem::ComponentFunc(_)) && !offered.contains(&member) {
                refused.push(refusal(
                    &format!("{name}#{member}"),
                    "the host implements only the parts of this interface that language runtimes need at start-up",
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Err(Error::ForbiddenImports { imports: refused });
    }
    let exported: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    for export in EXPORTS {
        let is_func = matches!(
            ty.get_export(engine, export).map(|e| e.ty),
            Some(ComponentItem::ComponentFunc(_))
        );
        if !is_func {
            let found = if exported.is_empty() {
                "nothing".to_owned()
            } else {
                exported.join(", ")
            };
            return Err(Error::WrongWorld {
                detail: format!("it does not export the function `{export}` (it exports: {found})"),
            });
        }
    }
    Ok(())
}

/// What the host offers of an imported interface.
enum Offered {
    /// These functions, implemented without capabilities.
    Only(&'static [&'static str]),
    /// Any function, each answering "not allowed" (see `wasi::denied`).
    AllRefused,
}

/// What the host offers in the interface `name` (`ns:pkg/iface@version`),
/// or why the import is refused. A processor built for another version of
/// Eddy's own world is the wrong world.
fn offered_functions(name: &str) -> Result<Result<Offered, &'static str>> {
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    if let Some((_, funcs)) = EDDY_INTERFACES.iter().find(|(i, _)| *i == interface) {
        if !version.starts_with(EDDY_VERSION_PREFIX) {
            return Err(Error::WrongWorld {
                detail: format!(
                    "it was built for `{name}`, but this host offers version {EDDY_VERSION_PREFIX}x; rebuild it with a matching eddy-processor"
                ),
            });
        }
        return Ok(Ok(Offered::Only(funcs)));
    }
    let wasi_02 = version.starts_with(WASI_VERSION_PREFIX);
    if denied_package(interface).is_some() {
        return Ok(if wasi_02 {
            Ok(Offered::AllRefused)
        } else {
            Err("only WASI 0.2 is supported")
        });
    }
    Ok(match SHIMS.iter().find(|(i, _)| *i == interface) {
        Some((_, funcs)) if wasi_02 => Ok(Offered::Only(funcs)),
        Some(_) => Err("only WASI 0.2 is supported"),
        None => Err(refusal_reason(interface)),
    })
}

fn refusal_reason(interface: &str) -> &'static str {
    let namespace = interface.split('/').next().unwrap_or(interface);
    match namespace {
        "wasi:clocks" => "a clock the host does not offer; use the records' timestamps instead",
        "wasi:random" => "randomness the host does not offer; processors must be deterministic",
        "wasi:cli" => "part of the command-line environment the host does not offer",
        _ if namespace.starts_with("wasi:") => "a WASI interface the Eddy host does not offer",
        _ => "not an interface the Eddy host offers",
    }
}

fn refusal(import: &str, reason: &str) -> RefusedImport {
    RefusedImport {
        import: import.to_owned(),
        reason: reason.to_owned(),
    }
}

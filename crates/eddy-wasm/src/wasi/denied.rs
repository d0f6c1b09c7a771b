//! WASI interfaces whose every call is refused: the filesystem, sockets
//! and HTTP. CPython and StarlingMonkey import them whether or not a
//! processor uses them, in whichever `0.2.x` their toolchain targets, so
//! the host defines each function the component imports from them when
//! it loads the component, and answers by the function's own type:
//!
//! - a `result` whose error type has a "not allowed" case
//!   ([`DENIAL_CASES`]) returns that error (opening a file, creating a
//!   socket, resolving a name, sending a request);
//! - a `list` is empty (no preopened directories), an `option` is `none`,
//!   a function with no result does nothing, a bare new resource is a
//!   handle that every later call refuses in the same way;
//! - anything else traps, naming the function.
//!
//! Nothing is ever opened, sent or looked up, and no handle leads to
//! anything outside the instance.

use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, Linker, Resource, ResourceAny, ResourceType, Val};
use wasmtime::{Engine, StoreContextMut};

use super::no_dtor;
use crate::state::State;

/// Packages whose interfaces are linked as refusals, and what they would
/// give a processor (for messages).
pub(crate) const DENIED: &[(&str, &str)] = &[
    ("wasi:filesystem", "filesystem access"),
    ("wasi:sockets", "network access"),
    ("wasi:http", "HTTP requests"),
];

/// Error cases that mean "not allowed", in the order looked for.
const DENIAL_CASES: &[&str] = &["access-denied", "not-permitted", "HTTP-request-denied"];

/// The host side of every resource of a denied interface.
struct Denied;

/// The package of an import name such as `wasi:sockets/tcp@0.2.9`, if it
/// is one of [`DENIED`].
pub(crate) fn denied_package(import: &str) -> Option<&'static (&'static str, &'static str)> {
    let package = import.split('/').next().unwrap_or(import);
    DENIED.iter().find(|(p, _)| *p == package)
}

/// Defines, in `linker`, every function and resource `component` imports
/// from a denied interface. A resource another interface defined first
/// (a `use`d type such as `wasi:io`'s streams) is left to its definer.
pub(crate) fn link_denied(
    linker: &mut Linker<State>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let mut seen_resources: Vec<ResourceType> = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let denied = denied_package(name).is_some();
        let mut definitions = denied.then(|| linker.instance(name)).transpose()?;
        for (member, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::Resource(ty) => {
                    let first = !seen_resources.contains(&ty);
                    if first {
                        seen_resources.push(ty);
                    }
                    if let Some(defs) = definitions.as_mut().filter(|_| first) {
                        defs.resource(member, ResourceType::host::<Denied>(), no_dtor)?;
                    }
                }
                ComponentItem::ComponentFunc(_) => {
                    if let Some(defs) = definitions.as_mut() {
                        let function = format!("{name}#{member}");
                        defs.func_new(member, move |store, ty, params, results| {
                            refuse(store, &function, &ty, params, results)
                        })?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Answers one call to a denied function (see the module docs).
fn refuse(
    mut store: StoreContextMut<'_, State>,
    function: &str,
    ty: &wasmtime::component::types::ComponentFunc,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    // Every handle passed in is let go: a borrow must end with the call,
    // and an owned handle dropped here cannot fill the host's tables.
    for param in params {
        release(&mut store, param)?;
    }
    for (slot, result_ty) in results.iter_mut().zip(ty.results()) {
        *slot = match refusal(&mut store, &result_ty)? {
            Some(value) => value,
            None => wasmtime::bail!(
                "the processor called `{function}`, which Eddy processors may not use ({})",
                denied_package(function).map_or("not offered", |(_, what)| what)
            ),
        };
    }
    Ok(())
}

/// Drops the resource handles in `value`, however deep.
fn release(store: &mut StoreContextMut<'_, State>, value: &Val) -> wasmtime::Result<()> {
    match value {
        Val::Resource(handle) => handle.resource_drop(&mut *store),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            items.iter().try_for_each(|v| release(store, v))
        }
        Val::Record(fields) => fields.iter().try_for_each(|(_, v)| release(store, v)),
        Val::Variant(_, Some(v))
        | Val::Option(Some(v))
        | Val::Result(Ok(Some(v)) | Err(Some(v))) => release(store, v),
        _ => Ok(()),
    }
}

/// The value that says "no" in type `ty`, if there is one.
fn refusal(store: &mut StoreContextMut<'_, State>, ty: &Type) -> wasmtime::Result<Option<Val>> {
    Ok(match ty {
        Type::Result(result) => match result.err() {
            None => Some(Val::Result(Err(None))),
            Some(error) => denial(&error).map(|e| Val::Result(Err(Some(Box::new(e))))),
        },
        Type::Option(_) => Some(Val::Option(None)),
        Type::List(_) => Some(Val::List(Vec::new())),
        Type::Own(resource) if *resource == ResourceType::host::<Denied>() => {
            let handle = ResourceAny::try_from_resource(Resource::<Denied>::new_own(0), store)?;
            Some(Val::Resource(handle))
        }
        _ => None,
    })
}

/// The "not allowed" case of an error type.
fn denial(error: &Type) -> Option<Val> {
    match error {
        Type::Enum(cases) => {
            let names: Vec<&str> = cases.names().collect();
            DENIAL_CASES
                .iter()
                .find(|case| names.contains(case))
                .map(|case| Val::Enum((*case).to_owned()))
        }
        Type::Variant(variant) => DENIAL_CASES.iter().find_map(|case| {
            variant
                .cases()
                .any(|c| c.name == *case && c.ty.is_none())
                .then(|| Val::Variant((*case).to_owned(), None))
        }),
        _ => None,
    }
}

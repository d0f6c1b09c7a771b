//! Test-only: a component of another world (exports `shout`, not `init`
//! and `process`). The host must refuse it, naming the missing export.

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "test:wrong/wrong@0.1.0" });

    struct Shout;

    impl Guest for Shout {
        fn shout(value: String) -> String {
            value.to_uppercase()
        }
    }

    export!(Shout);
}

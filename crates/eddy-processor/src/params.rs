//! Pipeline parameters, as given to [`crate::Processor::init`].

use std::str::FromStr;

use crate::bindings::eddy::processor::types::Param;

/// The parameters a pipeline passes to its processor (`--param name=value`
/// on the command line, `params:` in a manifest), looked up by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<Param>);

impl From<Vec<Param>> for Params {
    fn from(params: Vec<Param>) -> Self {
        Params(params)
    }
}

impl Params {
    /// The value of `name`, if given. When a name is given more than once
    /// the last value wins.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// The value of `name`, or an error saying that it is required.
    pub fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("missing parameter `{name}`: pass it with --param {name}=VALUE"))
    }

    /// The value of `name` parsed as a `T`, or an error naming the
    /// parameter and the value.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let value = self.require(name)?;
        value
            .parse()
            .map_err(|e| format!("parameter `{name}`={value:?} is not valid: {e}"))
    }

    /// Every parameter, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|p| (p.name.as_str(), p.value.as_str()))
    }
}

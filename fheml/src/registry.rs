//! The model families the library knows. The command, the benchmarks and the Python
//! bindings list and train models through a [`Registry`]; a new family is one crate that
//! implements [`ModelFamily`] plus one line in [`Registry::builtin`] (or, outside this
//! workspace, one [`Registry::with`]).

use std::sync::OnceLock;

use fheml_circuits::{FittedModel, ModelFamily};
use fheml_models_linear::LinearFamily;
use fheml_models_nn::NnFamily;
use fheml_models_tree::TreeFamily;

use crate::error::{Error, Result};

/// A list of model families.
pub struct Registry {
    families: Vec<Box<dyn ModelFamily>>,
}

impl Registry {
    /// The families of this workspace: linear models, trees, networks.
    pub fn builtin() -> &'static Registry {
        static BUILTIN: OnceLock<Registry> = OnceLock::new();
        BUILTIN.get_or_init(|| Registry {
            families: vec![Box::new(LinearFamily), Box::new(TreeFamily), Box::new(NnFamily)],
        })
    }

    /// The built-in families and `family`; refuses a family or model name already taken.
    pub fn with(family: impl ModelFamily + 'static) -> Result<Registry> {
        let mut families: Vec<Box<dyn ModelFamily>> =
            vec![Box::new(LinearFamily), Box::new(TreeFamily), Box::new(NnFamily)];
        if let Some(taken) =
            families.iter().find(|f| f.name() == family.name() || family.model_names().iter().any(|m| f.accepts(m)))
        {
            return Err(Error::Usage(format!(
                "the model family `{}` takes a name already used by the `{}` family",
                family.name(),
                taken.name()
            )));
        }
        families.push(Box::new(family));
        Ok(Registry { families })
    }

    /// Every family.
    pub fn families(&self) -> impl Iterator<Item = &dyn ModelFamily> {
        self.families.iter().map(|f| f.as_ref())
    }

    /// The family named `name` (as saved models record it).
    pub fn family(&self, name: &str) -> Option<&dyn ModelFamily> {
        self.families().find(|f| f.name() == name)
    }

    /// The family that trains `model`, or a usage error listing the valid names.
    pub fn family_of(&self, model: &str) -> Result<&dyn ModelFamily> {
        self.families().find(|f| f.accepts(model)).ok_or_else(|| {
            Error::Usage(format!("unknown model `{model}`; valid models: {}", self.model_names().join(", ")))
        })
    }

    /// Every model name, family by family.
    pub fn model_names(&self) -> Vec<&'static str> {
        self.families().flat_map(|f| f.model_names()).collect()
    }

    /// Reads a float model saved by its family.
    pub fn decode(&self, family: &str, bytes: &[u8]) -> Result<Box<dyn FittedModel>> {
        let owner = self.family(family).ok_or_else(|| {
            Error::Usage(format!("the model belongs to the `{family}` family, which this build does not know"))
        })?;
        Ok(owner.decode(bytes)?)
    }
}

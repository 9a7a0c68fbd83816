//! The optimizer's step over the network, with a state that survives a reload. burn's
//! `ModuleOptimizer` keys each parameter's state (Adam's moments, SGD's momentum) by a random
//! parameter id and restores it only onto its default device; here the state is keyed by the
//! parameter's place in the network (the order of the weights file) and restored onto the
//! training device, so a run resumed from a saved epoch continues the same curve, bit for bit.
//! The arithmetic is burn's own `Adam` and `Sgd` steps.

use std::any::Any;
use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    Adam, AdamConfig, GradientsParams, Optimizer as Rule, RecordState, Sgd, SgdConfig, StateSink,
    StateSource,
};
use burn::prelude::*;
use burn_pack::Scalar;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::Error;
use crate::model::Cnn;
use crate::schedule::Optimizer;
use crate::weights::Tensor32;

/// One parameter's state, its type erased; `rank` says which `State<D>` it holds.
struct State {
    rank: usize,
    value: Box<dyn Any + Send + Sync>,
}

enum Kind {
    Adam(Adam),
    Sgd(Sgd),
}

/// The optimizer `TrainConfig` asks for, and each parameter's state by its place.
pub struct Stepper {
    kind: Kind,
    states: Vec<Option<State>>,
}

/// A saved optimizer state: per parameter (in the weights file's order) the rank of its state, or
/// `None` when it has none yet; the state's tensors and scalars as burn names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    pub ranks: Vec<Option<usize>>,
    pub tensors: Vec<Tensor32>,
    pub scalars: BTreeMap<String, SavedScalar>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedScalar {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

impl From<Scalar> for SavedScalar {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Int(v) => Self::Int(v),
            Scalar::UInt(v) => Self::UInt(v),
            Scalar::Float(v) => Self::Float(v),
            Scalar::Bool(v) => Self::Bool(v),
        }
    }
}

impl From<SavedScalar> for Scalar {
    fn from(s: SavedScalar) -> Self {
        match s {
            SavedScalar::Int(v) => Self::Int(v),
            SavedScalar::UInt(v) => Self::UInt(v),
            SavedScalar::Float(v) => Self::Float(v),
            SavedScalar::Bool(v) => Self::Bool(v),
        }
    }
}

/// Applies `rule` to every parameter that has a gradient, in the network's order.
struct Step<'a, R: Rule> {
    rule: &'a R,
    states: &'a mut Vec<Option<State>>,
    grads: &'a mut GradientsParams,
    learning_rate: f64,
    index: usize,
}

impl<R: Rule> ModuleMapper for Step<'_, R> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let index = self.index;
        self.index += 1;
        if self.states.len() <= index {
            self.states.resize_with(index + 1, || None);
        }
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let state = self.states[index].take().map(|s| {
            *s.value
                .downcast::<R::State<D>>()
                .expect("a parameter's state keeps its rank (checked on restore)")
        });
        let (updated, state) = self
            .rule
            .step(self.learning_rate, tensor.inner(), grad, state);
        self.states[index] = state.map(|s| State {
            rank: D,
            value: Box::new(s),
        });
        let mut updated = Tensor::from_inner(updated);
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// The shape of each parameter of a network, in order.
struct Shapes(Vec<Vec<usize>>);

impl ModuleVisitor for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().dims().to_vec());
    }
}

fn flatten<R: Rule>(state: &State, prefix: &str, sink: &mut StateSink) {
    let value = &state.value;
    match state.rank {
        1 => value
            .downcast_ref::<R::State<1>>()
            .map(|s| s.state_flatten(prefix, sink)),
        2 => value
            .downcast_ref::<R::State<2>>()
            .map(|s| s.state_flatten(prefix, sink)),
        3 => value
            .downcast_ref::<R::State<3>>()
            .map(|s| s.state_flatten(prefix, sink)),
        _ => value
            .downcast_ref::<R::State<4>>()
            .map(|s| s.state_flatten(prefix, sink)),
    }
    .expect("a state holds its rank's type");
}

fn unflatten<R: Rule>(
    rank: usize,
    prefix: &str,
    source: &mut StateSource,
    device: &Device,
) -> Option<State> {
    fn boxed<T: Send + Sync + 'static>(rank: usize, value: T) -> State {
        State {
            rank,
            value: Box::new(value),
        }
    }
    match rank {
        1 => R::State::<1>::state_unflatten(prefix, source, device).map(|s| boxed(rank, s)),
        2 => R::State::<2>::state_unflatten(prefix, source, device).map(|s| boxed(rank, s)),
        3 => R::State::<3>::state_unflatten(prefix, source, device).map(|s| boxed(rank, s)),
        4 => R::State::<4>::state_unflatten(prefix, source, device).map(|s| boxed(rank, s)),
        _ => None,
    }
}

impl Stepper {
    /// A fresh optimizer: no state yet.
    pub fn new(config: &TrainConfig) -> Self {
        let kind = match config.optimizer {
            Optimizer::Adam => Kind::Adam(
                AdamConfig::new()
                    .with_beta_1(config.beta1)
                    .with_beta_2(config.beta2)
                    .with_epsilon(config.epsilon)
                    .build(),
            ),
            // Keras-style momentum: no dampening.
            Optimizer::Sgd => Kind::Sgd(
                SgdConfig::new()
                    .with_momentum(Some(
                        MomentumConfig::new()
                            .with_momentum(config.momentum)
                            .with_dampening(0.0),
                    ))
                    .build(),
            ),
        };
        Self {
            kind,
            states: Vec::new(),
        }
    }

    /// One step of `model` down `grads` at `learning_rate`.
    pub fn step(&mut self, learning_rate: f64, model: Cnn, mut grads: GradientsParams) -> Cnn {
        fn run<R: Rule>(
            rule: &R,
            states: &mut Vec<Option<State>>,
            grads: &mut GradientsParams,
            learning_rate: f64,
            model: Cnn,
        ) -> Cnn {
            model.map(&mut Step {
                rule,
                states,
                grads,
                learning_rate,
                index: 0,
            })
        }
        match &self.kind {
            Kind::Adam(rule) => run(rule, &mut self.states, &mut grads, learning_rate, model),
            Kind::Sgd(rule) => run(rule, &mut self.states, &mut grads, learning_rate, model),
        }
    }

    /// The state, read synchronously: on the CPU only (a GPU is read asynchronously).
    pub fn save(&self) -> Result<OptimizerState, Error> {
        let mut sink = StateSink::default();
        for (index, state) in self.states.iter().enumerate() {
            if let Some(state) = state {
                let prefix = index.to_string();
                match &self.kind {
                    Kind::Adam(_) => flatten::<Adam>(state, &prefix, &mut sink),
                    Kind::Sgd(_) => flatten::<Sgd>(state, &prefix, &mut sink),
                }
            }
        }
        let tensors = sink
            .tensors
            .into_iter()
            .map(|(name, data)| {
                let shape = data.shape().to_vec();
                let values = data.try_to_vec_as::<f32>().map_err(Error::read)?;
                Ok(Tensor32 {
                    name,
                    shape,
                    values,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(OptimizerState {
            ranks: self
                .states
                .iter()
                .map(|s| s.as_ref().map(|s| s.rank))
                .collect(),
            tensors,
            scalars: sink
                .scalars
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .collect(),
        })
    }

    /// The optimizer of `config` carrying on from `saved`, for `model`, with its state on
    /// `device`. A state of another network or another optimizer is refused.
    pub fn restore(
        config: &TrainConfig,
        saved: &OptimizerState,
        model: &Cnn,
        device: &Device,
    ) -> Result<Self, Error> {
        let refuse = |why: &str| {
            Error::Config(format!(
                "the checkpoint's optimizer state does not fit this run: {why}"
            ))
        };
        let mut shapes = Shapes(Vec::new());
        model.visit(&mut shapes);
        let shapes = shapes.0;
        if saved.ranks.len() > shapes.len() {
            return Err(refuse("it has more parameters than the network"));
        }
        // A state tensor (a moment, a momentum) has its parameter's shape.
        for t in &saved.tensors {
            let index = t
                .name
                .split('.')
                .next()
                .and_then(|i| i.parse::<usize>().ok());
            match index.and_then(|i| shapes.get(i)) {
                Some(shape)
                    if *shape == t.shape && t.values.len() == shape.iter().product::<usize>() => {}
                _ => {
                    return Err(refuse(&format!(
                        "its tensor {} fits no parameter of the network",
                        t.name
                    )))
                }
            }
        }
        let mut source = StateSource::new(
            saved
                .scalars
                .iter()
                .map(|(name, value)| (name.clone(), (*value).into()))
                .collect(),
        );
        for t in &saved.tensors {
            source.insert_tensor(
                t.name.clone(),
                TensorData::new(t.values.clone(), t.shape.clone()),
            );
        }
        let mut stepper = Self::new(config);
        for (index, rank) in saved.ranks.iter().enumerate() {
            let state = match rank {
                None => None,
                Some(rank) if *rank != shapes[index].len() => {
                    return Err(refuse(&format!(
                        "parameter {index} has rank {} in the network, {rank} in the state",
                        shapes[index].len()
                    )))
                }
                Some(rank) => {
                    let prefix = index.to_string();
                    let state = match &stepper.kind {
                        Kind::Adam(_) => unflatten::<Adam>(*rank, &prefix, &mut source, device),
                        Kind::Sgd(_) => unflatten::<Sgd>(*rank, &prefix, &mut source, device),
                    };
                    Some(state.ok_or_else(|| {
                        refuse(&format!(
                            "parameter {index}'s state is incomplete (another optimizer's?)"
                        ))
                    })?)
                }
            };
            stepper.states.push(state);
        }
        Ok(stepper)
    }
}

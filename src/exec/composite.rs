//! The steps of composite actions at run time: each has its composite's own `inputs`
//! (the caller's `with`, rendered in the caller's scope, over the action's defaults) and
//! its own `steps`, and when the composite's last step is done its `outputs` become the
//! calling step's, in the caller's scope. The plan side is [`crate::composite`].
//!
//! [`Frames::enter`] swaps the composite's scope into the job's context before a step,
//! [`Frames::leave`] swaps it out after; outside those the context is the job's.

use crate::composite::Frame;
use crate::template::{Context, Engine as Templates};
use serde_json::{Map, Value};
use std::sync::Arc;

struct Open {
    frame: Arc<Frame>,
    inputs: Map<String, Value>,
    steps: Map<String, Value>,
    failed: bool,
    /// Why the whole composite is skipped (the caller's `if` was false).
    skipped: Option<String>,
}

/// The composites open in a job, outermost first.
#[derive(Default)]
pub struct Frames {
    stack: Vec<Open>,
    /// The job's own `inputs` and `steps` while a composite's are in the context.
    outer: Option<(Map<String, Value>, Map<String, Value>)>,
}

impl Frames {
    /// Before a step: closes the composites it is not part of, opens those it is, and
    /// gives the context its composite's scope. `Ok(Some(why))`: skip the step (its
    /// composite's `if` was false); `Err`: the composite's inputs could not be rendered.
    pub fn enter(
        &mut self,
        frame: Option<&Arc<Frame>>,
        ctx: &mut Context,
        t: &Templates,
    ) -> Result<Option<String>, String> {
        let chain = frame.map(Frame::chain).unwrap_or_default();
        while let Some(top) = self.stack.last() {
            let keep = self.stack.len() <= chain.len()
                && Arc::ptr_eq(&chain[self.stack.len() - 1], &top.frame);
            if keep {
                break;
            }
            self.close(ctx, t);
        }
        let mut result = Ok(None);
        for f in chain.iter().skip(self.stack.len()) {
            // The caller's scope: the enclosing composite's, or the job's.
            let mut scope = ctx.clone();
            if let Some(parent) = self.stack.last() {
                scope.inputs = parent.inputs.clone();
                scope.steps = parent.steps.clone();
            }
            let mut open = Open {
                frame: f.clone(),
                inputs: Map::new(),
                steps: Map::new(),
                failed: false,
                skipped: self.stack.last().and_then(|p| p.skipped.clone()),
            };
            if open.skipped.is_none() {
                if let Some(c) = &f.condition {
                    match t.condition(c, &scope) {
                        Ok(true) => {}
                        Ok(false) => {
                            open.skipped = Some("`if` of the composite's step was false".into())
                        }
                        Err(e) => result = Err(format!("`if`: {}", e.message)),
                    }
                }
            }
            for (name, default) in &f.inputs {
                let v = match (f.with.get(name), default) {
                    (Some(v), _) => super::job::render_json(t, v, &scope),
                    (None, Some(d)) => t.render(d, &scope).map(Value::String),
                    (None, None) => Ok(Value::String(String::new())),
                };
                match v {
                    // Inputs are strings on GitHub, whatever YAML type was written.
                    Ok(Value::String(s)) => {
                        open.inputs.insert(name.clone(), Value::String(s));
                    }
                    Ok(Value::Null) => {
                        open.inputs
                            .insert(name.clone(), Value::String(String::new()));
                    }
                    Ok(other) => {
                        open.inputs
                            .insert(name.clone(), Value::String(other.to_string()));
                    }
                    Err(e) if result.is_ok() => {
                        result = Err(format!("with.{name}: {}", e.message));
                    }
                    Err(_) => {}
                }
            }
            self.stack.push(open);
        }
        if let Some(top) = self.stack.last_mut() {
            let inputs = std::mem::replace(&mut ctx.inputs, top.inputs.clone());
            let steps = std::mem::replace(&mut ctx.steps, std::mem::take(&mut top.steps));
            self.outer = Some((inputs, steps));
            if result.is_ok() {
                if let Some(why) = &top.skipped {
                    return Ok(Some(why.clone()));
                }
            }
        }
        result
    }

    /// After a step: its composite's scope leaves the context; `failed` marks the
    /// composites it is in as failed.
    pub fn leave(&mut self, ctx: &mut Context, failed: bool) {
        let Some((inputs, steps)) = self.outer.take() else {
            return;
        };
        if let Some(top) = self.stack.last_mut() {
            top.steps = std::mem::replace(&mut ctx.steps, steps);
        }
        ctx.inputs = inputs;
        if failed {
            for f in &mut self.stack {
                f.failed = true;
            }
        }
    }

    /// At the end of the job: every composite still open is done.
    pub fn close_all(&mut self, ctx: &mut Context, t: &Templates) {
        while !self.stack.is_empty() {
            self.close(ctx, t);
        }
    }

    /// The innermost composite is done: its outputs, rendered over its own steps,
    /// become the calling step's in the enclosing scope.
    fn close(&mut self, ctx: &mut Context, t: &Templates) {
        let Some(open) = self.stack.pop() else {
            return;
        };
        let f = &open.frame;
        if !f.caller_has_id {
            return;
        }
        let mut scope = ctx.clone();
        scope.inputs = open.inputs.clone();
        scope.steps = open.steps.clone();
        let outputs: Map<String, Value> = f
            .outputs
            .iter()
            .map(|(k, v)| {
                let val = t.render(v, &scope).unwrap_or_default();
                (k.clone(), Value::String(val))
            })
            .collect();
        let outcome = if open.skipped.is_some() {
            "skipped"
        } else if open.failed {
            "failure"
        } else {
            "success"
        };
        let mut m = Map::new();
        m.insert("outputs".into(), Value::Object(outputs));
        m.insert("outcome".into(), Value::String(outcome.into()));
        m.insert("conclusion".into(), Value::String(outcome.into()));
        let target = match self.stack.last_mut() {
            Some(parent) => &mut parent.steps,
            None => &mut ctx.steps,
        };
        target.insert(f.caller_id.clone(), Value::Object(m));
    }
}

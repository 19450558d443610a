//! Validation of the whole tree: every action checks its parameters; all errors are
//! collected and reported together as LAVA's `JobError("Invalid job data: [...]")`.

use crate::action::{ActionMeta, ActionNode};
use crate::error::{ErrorKind, LavaError, LavaResult};
use crate::job::Job;
use crate::pipeline::Pipeline;
use lava_python::str_repr;

/// What an action sees while validating.
pub struct ValidateContext<'a> {
    /// The job being validated.
    pub job: &'a Job,
    /// The validating action's metadata.
    pub meta: &'a ActionMeta,
    /// The action's children (some validations inspect them).
    pub children: &'a Pipeline,
    errors: Vec<String>,
    notes: Vec<String>,
}

impl ValidateContext<'_> {
    /// Record an error (as LAVA's `errors_add`).
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// Record every error of a check that collects them itself (a `check(…, &mut errors)`
    /// helper shared with code that has no validation context).
    pub fn add_errors(&mut self, messages: impl IntoIterator<Item = String>) {
        self.errors.extend(messages);
    }

    /// Record a line to log at `info` level with the validation (LAVA's `validate()` logs
    /// some, such as the QEMU version it found); `lava-run` logs them in tree order
    /// before `validate duration`.
    pub fn info(&mut self, message: impl Into<String>) {
        self.notes.push(message.into());
    }
}

impl Pipeline {
    /// Validate every action, depth first; JobErrors become recorded errors, other kinds
    /// abort. At the root, collected errors become one JobError.
    pub fn validate(&mut self, job: &Job) -> LavaResult<()> {
        self.validate_actions(job)?;
        let errors: Vec<String> = self
            .actions
            .iter()
            .flat_map(ActionNode::all_errors)
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            let list: Vec<String> = errors.iter().map(|e| str_repr(e)).collect();
            Err(LavaError::job(format!(
                "Invalid job data: [{}]\n",
                list.join(", ")
            )))
        }
    }

    /// The `info` lines of the last validation ([`ValidateContext::info`]), in tree order.
    pub fn validation_notes(&self) -> Vec<String> {
        self.actions
            .iter()
            .flat_map(ActionNode::all_notes)
            .collect()
    }

    fn validate_actions(&mut self, job: &Job) -> LavaResult<()> {
        for node in &mut self.actions {
            let mut errors = basic_checks(&node.meta);
            let outcome = {
                let mut ctx = ValidateContext {
                    job,
                    meta: &node.meta,
                    children: &node.pipeline,
                    errors: Vec::new(),
                    notes: Vec::new(),
                };
                let outcome = node.action.validate(&mut ctx);
                errors.append(&mut ctx.errors);
                node.notes = ctx.notes;
                outcome
            };
            match outcome {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::Job => errors.push(format!(
                    "{} {}: {}",
                    node.meta.level, node.meta.name, e.message
                )),
                Err(e) => return Err(e),
            }
            node.errors.extend(errors);
            node.pipeline.validate_actions(job)?;
        }
        Ok(())
    }
}

/// LAVA's base `Action.validate` checks on identity.
fn basic_checks(meta: &ActionMeta) -> Vec<String> {
    let mut errors = Vec::new();
    if meta.name.is_empty() {
        errors.push(format!("{} action has no name set", meta.class));
    }
    if meta.name.contains(char::is_whitespace) {
        errors.push(format!(
            "Whitespace must not be used in action names, only descriptions or summaries: {}",
            meta.name
        ));
    }
    if meta.name.contains('_') {
        errors.push(format!("Use - instead of _ in action names: {}", meta.name));
    }
    if meta.summary.is_empty() {
        errors.push(format!(
            "action {} ({}) lacks a summary",
            meta.name, meta.class
        ));
    }
    if meta.description.is_empty() {
        errors.push(format!(
            "action {} ({}) lacks a description",
            meta.name, meta.class
        ));
    }
    if meta.section.is_empty() {
        errors.push(format!(
            "action {} ({}) has no section set",
            meta.name, meta.class
        ));
    }
    errors
}

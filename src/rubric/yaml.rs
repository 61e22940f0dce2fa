//! Reading a rubric from YAML. The strict parse gives the model; a second, lenient parse
//! into a skeleton of [`serde_saphyr::Spanned`] values gives positions for validation
//! errors, because the model itself must stay plain (it is also built from JSON and
//! Markdown, serialised back to YAML, and described by the JSON Schema).

use serde::Deserialize;

use super::model::*;

impl Rubric {
    /// Parses and validates a YAML rubric. `origin` names the source in messages
    /// (usually the file path).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Rubric, RubricError> {
        let mut rubric: Rubric = serde_saphyr::from_str(text).map_err(|e| {
            let (pos, message) = yaml_message(&e);
            RubricError::Syntax {
                origin: origin.to_string(),
                pos,
                message,
            }
        })?;
        attach_yaml_spans(&mut rubric, text);
        rubric.validate(origin)?;
        Ok(rubric)
    }
}

/// serde-saphyr's message (its first line; the rest is a snippet we do not need) and
/// position.
fn yaml_message(e: &serde_saphyr::Error) -> (Option<Pos>, String) {
    let text = e.to_string();
    let mut first = text.lines().next().unwrap_or_default();
    // The position is reported apart; the parser's own `error: line N column M: ` would
    // repeat it.
    first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = first.strip_prefix("line ") {
        if let Some((_, msg)) = rest.split_once(": ") {
            first = msg;
        }
    }
    let first = first.to_string();
    let pos = e.location().filter(|l| l.line() > 0).map(|l| Pos {
        line: l.line(),
        col: l.column(),
    });
    (pos, first)
}

/// Lenient skeleton read only for positions; unknown fields are ignored here because the
/// strict parse has already accepted the document.
#[derive(Deserialize)]
struct SpanDoc {
    #[serde(default)]
    criteria: Vec<SpanCriterion>,
}

#[derive(Deserialize)]
struct SpanCriterion {
    id: Option<serde_saphyr::Spanned<String>>,
    points: Option<serde_saphyr::Spanned<f64>>,
    needs: Option<Vec<serde_saphyr::Spanned<String>>>,
}

fn attach_yaml_spans(rubric: &mut Rubric, text: &str) {
    let Ok(doc) = serde_saphyr::from_str::<SpanDoc>(text) else {
        return;
    };
    let pos = |loc: &serde_saphyr::Location| {
        (loc.line() > 0).then(|| Pos {
            line: loc.line(),
            col: loc.column(),
        })
    };
    for (c, s) in rubric.criteria.iter_mut().zip(doc.criteria) {
        c.span = CriterionSpan {
            id: s.id.as_ref().and_then(|v| pos(&v.referenced)),
            points: s.points.as_ref().and_then(|v| pos(&v.referenced)),
            needs: s
                .needs
                .unwrap_or_default()
                .iter()
                .map(|v| pos(&v.referenced))
                .collect(),
        };
    }
}

//! `--json`: every event as one JSON object per line, for programs.
//!
//! The objects are exactly the serde form of [`Event`] (tagged by `event`), so
//! a consumer can deserialize them with the same type; `run_finished` is the
//! last line and there is no summary. Not for people: nothing is coloured,
//! shortened or grouped.

use super::{ignore_io, Reporter};
use crate::event::Event;
use std::io::{BufWriter, Write};

pub struct JsonReporter {
    out: BufWriter<Box<dyn Write + Send>>,
}

impl JsonReporter {
    pub fn new(out: Box<dyn Write + Send>) -> JsonReporter {
        JsonReporter {
            out: BufWriter::new(out),
        }
    }
}

impl Reporter for JsonReporter {
    fn event(&mut self, ev: &Event) {
        // A reader following the stream (`trun run --json | jq`) acts per
        // event, so each line is flushed as soon as it is complete.
        ignore_io(
            serde_json::to_writer(&mut self.out, ev)
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n"))
                .and_then(|()| self.out.flush()),
        );
    }

    fn finish(&mut self) {
        ignore_io(self.out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{sample_run, SharedBuf};

    #[test]
    fn one_line_per_event_in_serde_form() {
        let buf = SharedBuf::default();
        let mut reporter = JsonReporter::new(Box::new(buf.clone()));
        let events = sample_run();
        for ev in &events {
            reporter.event(ev);
        }
        reporter.finish();
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), events.len());
        assert_eq!(
            lines[0],
            r#"{"event":"run_started","run_id":17,"workflow":"app","at":1700000000000,"jobs":[{"key":"build","job_id":"build","name":"build","needs":[],"matrix":{},"steps":[{"index":0,"id":"compile","name":"compile"},{"index":1,"id":"test","name":"test"}]},{"key":"lint","job_id":"lint","name":"lint","needs":[],"matrix":{},"steps":[{"index":0,"id":"fmt","name":"fmt"},{"index":1,"id":"clippy","name":"clippy"}]},{"key":"deploy","job_id":"deploy","name":"deploy","needs":["build"],"matrix":{},"steps":[{"index":0,"id":"push","name":"push"}]}]}"#
        );
        assert_eq!(
            lines[8],
            r#"{"event":"step_output","job":"build","step":0,"stream":"stderr","line":"error: linker crashed"}"#
        );
        assert_eq!(
            lines[9],
            r#"{"event":"step_retrying","job":"build","step":0,"attempt":1,"delay_ms":500,"reason":"exit code 1","exit_code":1}"#
        );
        assert_eq!(
            lines[20],
            r#"{"event":"step_finished","job":"build","step":1,"status":"failure","exit_code":2,"reason":"exit code 2","attempt":1,"at":1700000002800,"duration_ms":1200,"outputs":{},"continue_on_error":false,"log_path":".trun/logs/17/build/test.log"}"#
        );
        assert_eq!(
            lines[23],
            r#"{"event":"run_finished","run_id":17,"status":"failure","at":1700000003200,"duration_ms":3200}"#
        );
        // Every line reads back as the event it came from.
        for (line, ev) in lines.iter().zip(&events) {
            let back: Event = serde_json::from_str(line).unwrap();
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(ev).unwrap()
            );
        }
    }
}

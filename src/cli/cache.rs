//! `trun cache stats|prune`: the content-addressed output cache.

use super::{load, CacheCommand, CmdResult, EXIT_OK};
use crate::diag::Diagnostic;

pub(super) fn cmd_cache(c: CacheCommand) -> CmdResult {
    let plain = |e: String| vec![Diagnostic::plain(e)];
    match c {
        CacheCommand::Stats { file, json } => {
            let (wf, _) = load(&file)?;
            let ut = crate::uptodate_hooks::open_store(&wf.root).map_err(plain)?;
            let st = ut.cache_stats().map_err(|e| plain(e.to_string()))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
            } else {
                outln!(
                    "{} object{} ({}) in {}\n{} recorded success{} for {} step{}",
                    st.objects,
                    if st.objects == 1 { "" } else { "s" },
                    human_bytes(st.bytes),
                    wf.root.join(".trun/cas").display(),
                    st.entries,
                    if st.entries == 1 { "" } else { "es" },
                    st.steps,
                    if st.steps == 1 { "" } else { "s" },
                );
            }
            Ok(EXIT_OK)
        }
        CacheCommand::Prune {
            file,
            keep,
            older_than,
        } => {
            if keep.is_none() && older_than.is_none() {
                return Err(plain(
                    "say what to prune: --keep N and/or --older-than DURATION".into(),
                ));
            }
            let older = older_than
                .as_deref()
                .map(crate::duration::parse)
                .transpose()
                .map_err(|e| plain(format!("--older-than: {e}")))?;
            let (wf, _) = load(&file)?;
            let ut = crate::uptodate_hooks::open_store(&wf.root).map_err(plain)?;
            let r = ut.prune(keep, older).map_err(|e| plain(e.to_string()))?;
            outln!(
                "forgot {} success{}, deleted {} object{}, freed {}",
                r.entries_removed,
                if r.entries_removed == 1 { "" } else { "es" },
                r.objects_removed,
                if r.objects_removed == 1 { "" } else { "s" },
                human_bytes(r.bytes_freed)
            );
            Ok(EXIT_OK)
        }
    }
}

fn human_bytes(b: u64) -> String {
    crate::size::format(b)
}

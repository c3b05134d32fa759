//! Which node becomes the backing file after a stream.
//!
//! This is the question the 2020 qemu-block thread "stream: Deal with
//! filters" argued about, kept in one place so that the alternatives can be
//! compared. At start the stream records two nodes (`stream_start`):
//!
//! - `base_overlay`: the bottom-most image whose data is copied (the first
//!   non-filter overlay of the base, or `bottom`);
//! - `above_base`: the node directly above the base, which is
//!   `base_overlay` unless filters sit between `base_overlay` and the base.
//!
//! At completion (`stream_prepare`) QEMU 10.0 re-reads the base *then*:
//! whatever is below `above_base` at that moment becomes the new backing
//! node ([`BackingChoice::AboveBase`]). The thread's alternatives are kept
//! for comparison: Vladimir's "use backing(base_overlay)", which keeps every
//! filter above the base ([`BackingChoice::BaseOverlay`]), and "freeze the
//! base" (the base given at start, [`BackingChoice::BaseAtStart`]).

pub use crate::policy::BackingChoice;
use strata_graph::{Graph, NodeId};

/// The nodes a stream remembers at start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StreamBounds {
    /// The bottom-most node whose data is copied.
    pub base_overlay: NodeId,
    /// The node directly above the base (a filter or `base_overlay`).
    pub above_base: NodeId,
    /// The base at start: the one given, or the node below `bottom`
    /// (`None`: the whole chain is streamed). QEMU 10.0 never uses it.
    pub base_at_start: Option<NodeId>,
}

/// Why the bounds could not be computed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NotInChain {
    /// `'<base>' is not in the backing chain of '<top>'`, QEMU's text.
    pub message: String,
}

/// Computes the bounds as `stream_start` does.
///
/// With `bottom`, both nodes are `bottom`. Otherwise `base_overlay` is
/// `find_overlay(top, base)`; `above_base` walks down from `base_overlay`
/// through filters to the node whose chain child is `base`.
pub fn stream_bounds(
    graph: &Graph,
    top: NodeId,
    base: Option<NodeId>,
    bottom: Option<NodeId>,
) -> Result<StreamBounds, NotInChain> {
    if let Some(bottom) = bottom {
        return Ok(StreamBounds {
            base_overlay: bottom,
            above_base: bottom,
            base_at_start: graph.filter_or_cow_node(bottom),
        });
    }
    let Some(base_overlay) = graph.find_overlay(top, base) else {
        return Err(NotInChain {
            message: format!(
                "'{}' is not in the backing chain of '{}'",
                base.map_or("", |b| graph.name(b)),
                graph.name(top)
            ),
        });
    };
    let mut above_base = base_overlay;
    if let Some(base) = base {
        while let Some(next) = graph.filter_or_cow_node(above_base) {
            if next == base {
                break;
            }
            above_base = next;
        }
    }
    Ok(StreamBounds {
        base_overlay,
        above_base,
        base_at_start: base,
    })
}

/// `above_base` found from the base upwards past implicit filters
/// (`policy::BaseSearch::SkipImplicitFilters`, Max Reitz's suggestion): the
/// lowest node between `base_overlay` and the base that is not an implicit
/// filter. `base_overlay` is never a filter, so there always is one.
pub fn skip_implicit_above_base(graph: &Graph, bounds: StreamBounds) -> StreamBounds {
    let Some(base) = bounds.base_at_start else {
        return bounds;
    };
    let between: Vec<NodeId> = graph
        .chain(bounds.base_overlay)
        .take_while(|&n| n != base)
        .collect();
    let is_implicit_filter = |n: NodeId| {
        graph
            .node(n)
            .is_ok_and(|node| node.implicit && node.traits().is_filter)
    };
    let above_base = between
        .iter()
        .rev()
        .copied()
        .find(|&n| !is_implicit_filter(n))
        .unwrap_or(bounds.base_overlay);
    StreamBounds {
        above_base,
        ..bounds
    }
}

/// The node that becomes the backing node of the streamed image at
/// completion, under `choice`; `None` means the image loses its backing file.
pub fn new_backing_node(
    graph: &Graph,
    bounds: &StreamBounds,
    choice: BackingChoice,
) -> Option<NodeId> {
    match choice {
        BackingChoice::AboveBase => graph.filter_or_cow_node(bounds.above_base),
        BackingChoice::BaseOverlay => graph.filter_or_cow_node(bounds.base_overlay),
        BackingChoice::BaseAtStart => bounds.base_at_start,
    }
}

/// The backing format written into an image header when the new backing
/// node is a protocol node: QMP's `backing-mask-protocol`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum BackingFormat {
    /// The node's own driver (`file`, ...): the default.
    #[default]
    Driver,
    /// `raw` for a protocol node, so that nothing probes the file.
    MaskProtocol,
}

impl BackingFormat {
    /// QMP's `backing-mask-protocol` (absent: false).
    pub fn from_mask_protocol(mask: Option<bool>) -> BackingFormat {
        if mask == Some(true) {
            BackingFormat::MaskProtocol
        } else {
            BackingFormat::Driver
        }
    }

    /// The format string for `node` in a header.
    pub fn of(self, node: &strata_graph::Node) -> &str {
        match self {
            BackingFormat::MaskProtocol if node.traits().is_protocol => "raw",
            _ => node.driver(),
        }
    }
}

/// The header `stream_prepare` wrote before QEMU 6.0
/// (`policy::HeaderString::StringAtStart`): the string fixed at start and
/// the new backing node's own driver as format, a filter's if it is one.
/// `None`: remove the backing.
pub fn header_backing_at_start(
    graph: &Graph,
    new_backing: Option<NodeId>,
    string_at_start: Option<&str>,
) -> Option<(Option<String>, String)> {
    let node = graph.node(new_backing?).ok()?;
    Some((
        string_at_start.map(str::to_string),
        node.driver().to_string(),
    ))
}

/// The backing file string and format `stream_prepare` writes into the
/// streamed image's header: the user's `backing-file` if given, else the
/// filename of the first non-filter below the new backing node (never a
/// filter's `json:` name); the format is that node's driver, or `raw` for a
/// protocol node with [`BackingFormat::MaskProtocol`]. `None`: remove the backing.
pub fn header_backing(
    graph: &Graph,
    new_backing: Option<NodeId>,
    backing_file: Option<&str>,
    format: BackingFormat,
) -> Option<(String, String)> {
    let base = graph.skip_filters(new_backing?);
    let node = graph.node(base).ok()?;
    let format = format.of(node);
    let name = backing_file.map_or_else(|| node.filename.clone(), str::to_string);
    Some((name, format.to_string()))
}

//! The screen encoder (sharer) and decoder (viewer).
//!
//! Per frame, the [`Encoder`]:
//! 1. finds the changed 64 × 64 tiles ([`crate::tiles::changed_tiles`]);
//! 2. if many changed, looks for a vertical scroll and sends it as one `Copy` op, then compares
//!    again against the shifted previous frame, so only the uncovered band is left;
//! 3. classifies each changed tile: one colour → `Fill` (neighbours of the same colour merged);
//!    at most 256 colours (text, UI, diagrams) → lossless `Palette` (indices, LZ4); more
//!    (photos, video, gradients) → `Jpeg` at the controller's quality, or lossless `Raw` when
//!    lossy coding is off. Neighbouring tiles of the same kind in a row are merged (up to 16);
//! 4. when the screen is calm, re-sends tiles last sent lossy as lossless ("refinement"), so a
//!    still screen ends up exact;
//! 5. packs the ops into payloads of at most `max_payload` bytes (parts of one frame).
//!
//! The [`Decoder`] applies parts as they arrive (every op is absolute except `Copy`), bounds
//! the frame by its [`Limits`] before allocating, and reports when it lost a part and needs a
//! refresh.

use jpeg_encoder::{ColorType, Encoder as JpegEncoder};
use lifeline_core::wire::MAX_PAYLOAD_LEN;
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::frame::{Frame, Rect};
use crate::message::{MAX_RECT_PIXELS, Op, UPDATE_HEADER_LEN, UPDATE_LAST, UPDATE_REFRESH, Update, UpdateHeader};
use crate::tiles::{TileGrid, changed_tiles, changed_tiles_within, detect_vertical_scroll};

/// Encoder settings that do not change during a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Tile side (64).
    pub tile: u16,
    /// Largest payload produced ([`MAX_PAYLOAD_LEN`]; values under 512 count as 512).
    pub max_payload: usize,
    /// Look for vertical scrolls (`Copy` ops).
    pub scroll_detection: bool,
    /// Most tiles merged into one op.
    pub max_run: usize,
    /// Send tiles of at most 256 colours as `Palette` (otherwise `Raw`). For measurements.
    pub palette: bool,
    /// A tile with more colours than this is photo-like (JPEG when lossy); at most 256. For
    /// measurements: 1 sends every non-solid tile as JPEG.
    pub photo_colors: usize,
    /// Threads that code tile rows in parallel (1: the calling thread only). The output is the
    /// same byte for byte whatever the count.
    pub threads: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            tile: 64,
            max_payload: MAX_PAYLOAD_LEN,
            scroll_detection: true,
            max_run: 16,
            palette: true,
            photo_colors: 256,
            threads: 1,
        }
    }
}

/// Per-frame choices, from the rate controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quality {
    /// Send photo-like tiles as JPEG (otherwise lossless).
    pub lossy: bool,
    /// JPEG quality, 1..=100.
    pub jpeg_quality: u8,
    /// Most lossy tiles to re-send lossless this frame when few tiles changed.
    pub refine_tiles: usize,
}

impl Default for Quality {
    fn default() -> Self {
        Quality { lossy: true, jpeg_quality: 75, refine_tiles: 32 }
    }
}

/// What one call to [`Encoder::encode`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Tiles that changed (after a scroll copy, if any).
    pub changed_tiles: usize,
    /// Rows moved by a `Copy` op (0: no scroll found).
    pub scrolled_rows: u16,
    /// `Fill` ops.
    pub fills: usize,
    /// `Palette` ops.
    pub palettes: usize,
    /// `Raw` ops.
    pub raws: usize,
    /// `Jpeg` ops.
    pub jpegs: usize,
    /// Lossy tiles re-sent lossless.
    pub refined_tiles: usize,
    /// Payloads produced.
    pub parts: usize,
    /// Payload bytes produced.
    pub bytes: usize,
}

impl EncodeStats {
    /// Adds the op counts of another part of the same frame.
    fn add_ops(&mut self, other: &EncodeStats) {
        self.fills += other.fills;
        self.palettes += other.palettes;
        self.raws += other.raws;
        self.jpegs += other.jpegs;
    }
}

/// Encodes frames of one monitor into `Update` payloads.
#[derive(Debug)]
pub struct Encoder {
    monitor: u8,
    config: EncoderConfig,
    reference: Option<Frame>,
    lossy: Vec<bool>,
    dirty: Vec<bool>,
    frame: u32,
    refresh: bool,
    scratch: Vec<u8>,
    packed: Vec<u8>,
}

/// What kind of op a tile becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TileKind {
    Solid([u8; 3]),
    Lossless,
    Photo,
}

impl Encoder {
    /// An encoder for monitor `monitor`.
    pub fn new(monitor: u8, config: EncoderConfig) -> Encoder {
        let config = EncoderConfig { max_payload: config.max_payload.max(512), ..config };
        Encoder {
            monitor,
            config,
            reference: None,
            lossy: Vec::new(),
            dirty: Vec::new(),
            frame: 0,
            refresh: true,
            scratch: Vec::new(),
            packed: Vec::new(),
        }
    }

    /// Sends every tile with the next frame (the viewer asked, or lost a part).
    pub fn request_refresh(&mut self) {
        self.refresh = true;
    }

    /// The sequence number the next frame will carry.
    pub const fn next_frame(&self) -> u32 {
        self.frame
    }

    /// Encodes `frame` against the previous one; appends payloads to `out` (none if nothing
    /// changed and nothing needs refining).
    pub fn encode(&mut self, frame: &Frame, quality: &Quality, out: &mut Vec<Vec<u8>>) -> EncodeStats {
        self.encode_changed(frame, None, quality, out)
    }

    /// [`Encoder::encode`] when the caller knows where `frame` can differ from the frame it
    /// passed last time: only tiles meeting `changed` are compared (`None`: all). Sound only if
    /// `frame` is the same buffer as last time and nothing outside `changed` was written to it,
    /// as with [`Capturer::capture_changed`](crate::backend::Capturer::capture_changed).
    pub fn encode_changed(
        &mut self,
        frame: &Frame,
        changed: Option<&[Rect]>,
        quality: &Quality,
        out: &mut Vec<Vec<u8>>,
    ) -> EncodeStats {
        let mut stats = EncodeStats::default();
        let grid = TileGrid::new(frame.width(), frame.height(), self.config.tile);
        let refresh = self.refresh
            || self.reference.as_ref().is_none_or(|r| r.width() != frame.width() || r.height() != frame.height());
        let mut ops: Vec<EncodedOp> = Vec::new();
        if refresh {
            self.dirty.clear();
            self.dirty.resize(grid.len(), true);
            self.lossy.clear();
            self.lossy.resize(grid.len(), false);
            stats.changed_tiles = grid.len();
        } else if let Some(reference) = self.reference.as_mut() {
            let mut changed = changed_tiles_within(reference, frame, &grid, changed, &mut self.dirty);
            if self.config.scroll_detection
                && changed >= 8
                && let Some(scroll) = detect_vertical_scroll(reference, frame, &grid, &self.dirty, self.config.tile)
            {
                reference.copy_within(scroll.src, scroll.src.x, scroll.dst_y);
                move_lossy_marks(&mut self.lossy, &grid, scroll.src, scroll.dst_y);
                stats.scrolled_rows = scroll.src.height;
                ops.push(EncodedOp::Copy { src: scroll.src, dst_y: scroll.dst_y });
                changed = changed_tiles(reference, frame, &grid, &mut self.dirty);
            }
            stats.changed_tiles = changed;
        }

        // Changed tiles, row by row, merged into runs of the same kind; rows split among threads.
        let threads = self.config.threads.clamp(1, grid.rows.max(1));
        if threads == 1 {
            let mut coder = RunCoder { config: &self.config, scratch: &mut self.scratch };
            coder.encode_rows(frame, &grid, 0..grid.rows, &self.dirty, &mut self.lossy, quality, &mut ops, &mut stats);
        } else {
            let rows_per = grid.rows.div_ceil(threads);
            let (config, dirty) = (&self.config, &self.dirty);
            let results: Vec<(Vec<EncodedOp>, EncodeStats)> = std::thread::scope(|scope| {
                let mut handles = Vec::new();
                let mut lossy_rest: &mut [bool] = &mut self.lossy;
                for first in (0..grid.rows).step_by(rows_per) {
                    let rows = first..(first + rows_per).min(grid.rows);
                    let (lossy, rest) = lossy_rest.split_at_mut(rows.len() * grid.columns);
                    lossy_rest = rest;
                    let grid = &grid;
                    handles.push(scope.spawn(move || {
                        let (mut ops, mut stats, mut scratch) = (Vec::new(), EncodeStats::default(), Vec::new());
                        let mut coder = RunCoder { config, scratch: &mut scratch };
                        coder.encode_rows(frame, grid, rows, dirty, lossy, quality, &mut ops, &mut stats);
                        (ops, stats)
                    }));
                }
                // A coding thread cannot panic on any frame (no input reaches it unchecked);
                // if one did, its rows are simply missing and the next refresh repairs them.
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
            for (part_ops, part_stats) in results {
                ops.extend(part_ops);
                stats.add_ops(&part_stats);
            }
        }

        // Refinement: lossy tiles that did not change, when little else did.
        if !refresh && stats.changed_tiles <= quality.refine_tiles {
            let mut budget = quality.refine_tiles - stats.changed_tiles;
            for index in 0..grid.len() {
                if budget == 0 {
                    break;
                }
                if self.lossy[index] && !self.dirty[index] {
                    self.lossy[index] = false;
                    budget -= 1;
                    stats.refined_tiles += 1;
                    let rect = grid.rect(index % grid.columns, index / grid.columns);
                    let kind = classify(frame, rect, 256);
                    let kind = if matches!(kind, TileKind::Photo) { TileKind::Lossless } else { kind };
                    RunCoder { config: &self.config, scratch: &mut self.scratch }
                        .encode_run(frame, rect, kind, quality, &mut ops, &mut stats);
                }
            }
        }

        match self.reference.as_mut() {
            // Tiles not marked dirty are byte-identical already (the comparison is exact), so
            // only the dirty ones are copied into the reference.
            Some(reference) if !refresh => {
                let stride = frame.stride();
                for (index, _) in self.dirty.iter().enumerate().filter(|(_, dirty)| **dirty) {
                    let rect = grid.rect(index % grid.columns, index / grid.columns);
                    let (left, right) = (usize::from(rect.x) * 4, rect.right() as usize * 4);
                    for y in usize::from(rect.y)..rect.bottom() as usize {
                        let row = y * stride;
                        reference.as_bytes_mut()[row + left..row + right]
                            .copy_from_slice(&frame.as_bytes()[row + left..row + right]);
                    }
                }
            }
            Some(reference) if reference.width() == frame.width() && reference.height() == frame.height() => {
                reference.as_bytes_mut().copy_from_slice(frame.as_bytes());
            }
            _ => self.reference = Some(frame.clone()),
        }
        self.refresh = false;
        if ops.is_empty() {
            return stats;
        }
        let flags = if refresh { UPDATE_REFRESH } else { 0 };
        self.pack(frame, &ops, flags, out, &mut stats);
        self.frame = self.frame.wrapping_add(1);
        stats
    }

    fn pack(&mut self, frame: &Frame, ops: &[EncodedOp], flags: u8, out: &mut Vec<Vec<u8>>, stats: &mut EncodeStats) {
        let mut part: u16 = 0;
        let header = |part: u16| UpdateHeader {
            monitor: self.monitor,
            frame: self.frame,
            part,
            flags,
            width: frame.width(),
            height: frame.height(),
        };
        let first = out.len();
        let mut current = Vec::with_capacity(self.config.max_payload);
        header(part).append_to(&mut current);
        for op in ops {
            self.packed.clear();
            if op.as_op().append_to(&mut self.packed).is_none() {
                continue;
            }
            if current.len() + self.packed.len() > self.config.max_payload && current.len() > UPDATE_HEADER_LEN {
                out.push(core::mem::take(&mut current));
                part = part.wrapping_add(1);
                current = Vec::with_capacity(self.config.max_payload);
                header(part).append_to(&mut current);
            }
            current.extend_from_slice(&self.packed);
        }
        out.push(current);
        if let Some(last) = out.last_mut() {
            last[UPDATE_FLAGS_OFFSET] |= UPDATE_LAST;
        }
        stats.parts = out.len() - first;
        stats.bytes = out[first..].iter().map(Vec::len).sum();
    }
}

/// Codes runs of tiles into ops; one per thread.
struct RunCoder<'a> {
    config: &'a EncoderConfig,
    scratch: &'a mut Vec<u8>,
}

impl RunCoder<'_> {
    /// Codes the changed tiles of `rows`; `lossy` holds the flags of exactly those rows.
    #[allow(clippy::too_many_arguments)]
    fn encode_rows(
        &mut self,
        frame: &Frame,
        grid: &TileGrid,
        rows: core::ops::Range<usize>,
        dirty: &[bool],
        lossy: &mut [bool],
        quality: &Quality,
        ops: &mut Vec<EncodedOp>,
        stats: &mut EncodeStats,
    ) {
        let first_row = rows.start;
        for row in rows {
            let mut column = 0;
            while column < grid.columns {
                if !dirty[row * grid.columns + column] {
                    column += 1;
                    continue;
                }
                let kind = classify(frame, grid.rect(column, row), self.config.photo_colors);
                let mut end = column + 1;
                while end < grid.columns
                    && dirty[row * grid.columns + end]
                    && (matches!(kind, TileKind::Solid(_)) || end - column < self.config.max_run)
                    && classify(frame, grid.rect(end, row), self.config.photo_colors) == kind
                {
                    end += 1;
                }
                let is_lossy = matches!(kind, TileKind::Photo) && quality.lossy;
                let local = (row - first_row) * grid.columns;
                for flag in &mut lossy[local + column..local + end] {
                    *flag = is_lossy;
                }
                let run = run_rect(grid, row, column, end);
                self.encode_run(frame, run, kind, quality, ops, stats);
                column = end;
            }
        }
    }

    fn encode_run(
        &mut self,
        frame: &Frame,
        rect: Rect,
        kind: TileKind,
        quality: &Quality,
        ops: &mut Vec<EncodedOp>,
        stats: &mut EncodeStats,
    ) {
        let budget = self.config.max_payload.saturating_sub(UPDATE_HEADER_LEN);
        let op = match kind {
            TileKind::Solid(rgb) => {
                stats.fills += 1;
                EncodedOp::Fill { rect, rgb }
            }
            TileKind::Photo if quality.lossy => {
                copy_rect(frame, rect, self.scratch);
                let mut jpeg = Vec::new();
                let mut encoder = JpegEncoder::new(&mut jpeg, quality.jpeg_quality.clamp(1, 100));
                encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
                let encoded = encoder.encode(self.scratch, rect.width, rect.height, ColorType::Bgra).is_ok();
                if encoded && jpeg.len() + 11 <= budget {
                    stats.jpegs += 1;
                    EncodedOp::Jpeg { rect, data: jpeg }
                } else if let Some((left, right)) = split(rect, self.config.tile) {
                    self.encode_run(frame, left, kind, quality, ops, stats);
                    self.encode_run(frame, right, kind, quality, ops, stats);
                    return;
                } else {
                    let lossless = Quality { lossy: false, ..*quality };
                    self.encode_run(frame, rect, TileKind::Lossless, &lossless, ops, stats);
                    return;
                }
            }
            TileKind::Photo | TileKind::Lossless => {
                let colors = if self.config.palette { palette(frame, rect, self.scratch) } else { None };
                let op = match colors {
                    Some(colors) => {
                        stats.palettes += 1;
                        EncodedOp::Palette { rect, colors, lz4: lz4_flex::block::compress(self.scratch) }
                    }
                    None => {
                        stats.raws += 1;
                        copy_rgb(frame, rect, self.scratch);
                        EncodedOp::Raw { rect, lz4: lz4_flex::block::compress(self.scratch) }
                    }
                };
                if op.len() > budget {
                    match split(rect, self.config.tile) {
                        Some((left, right)) => {
                            // Undo the count; the halves count themselves.
                            match op {
                                EncodedOp::Palette { .. } => stats.palettes -= 1,
                                _ => stats.raws -= 1,
                            }
                            self.encode_run(frame, left, kind, quality, ops, stats);
                            self.encode_run(frame, right, kind, quality, ops, stats);
                            return;
                        }
                        // A single tile of at most 64 x 64 always fits: 12 288 bytes of RGB
                        // compress to at most 12 352 bytes. Smaller payload limits split rows.
                        None => match split_rows(rect) {
                            Some((top, bottom)) => {
                                self.encode_run(frame, top, kind, quality, ops, stats);
                                self.encode_run(frame, bottom, kind, quality, ops, stats);
                                return;
                            }
                            None => op,
                        },
                    }
                } else {
                    op
                }
            }
        };
        ops.push(op);
    }
}

/// Where the flags byte sits in an `Update` header: type, monitor, frame u32, part u16.
const UPDATE_FLAGS_OFFSET: usize = 8;

/// An op with owned data, before packing.
#[derive(Debug)]
enum EncodedOp {
    Copy { src: Rect, dst_y: u16 },
    Fill { rect: Rect, rgb: [u8; 3] },
    Raw { rect: Rect, lz4: Vec<u8> },
    Palette { rect: Rect, colors: Vec<u8>, lz4: Vec<u8> },
    Jpeg { rect: Rect, data: Vec<u8> },
}

impl EncodedOp {
    fn as_op(&self) -> Op<'_> {
        match self {
            EncodedOp::Copy { src, dst_y } => Op::Copy { src: *src, dst_x: src.x, dst_y: *dst_y },
            EncodedOp::Fill { rect, rgb } => Op::Fill { rect: *rect, rgb: *rgb },
            EncodedOp::Raw { rect, lz4 } => Op::Raw { rect: *rect, lz4 },
            EncodedOp::Palette { rect, colors, lz4 } => Op::Palette { rect: *rect, colors, lz4 },
            EncodedOp::Jpeg { rect, data } => Op::Jpeg { rect: *rect, data },
        }
    }

    fn len(&self) -> usize {
        self.as_op().encoded_len()
    }
}

fn run_rect(grid: &TileGrid, row: usize, start: usize, end: usize) -> Rect {
    let first = grid.rect(start, row);
    let last = grid.rect(end - 1, row);
    Rect::new(first.x, first.y, (last.right() - u32::from(first.x)) as u16, first.height)
}

/// Splits a run of several tiles into two runs at a tile boundary.
fn split(rect: Rect, tile: u16) -> Option<(Rect, Rect)> {
    let tiles = rect.width.div_ceil(tile);
    if tiles < 2 {
        return None;
    }
    let left = tiles / 2 * tile;
    Some((
        Rect::new(rect.x, rect.y, left, rect.height),
        Rect::new(rect.x + left, rect.y, rect.width - left, rect.height),
    ))
}

fn split_rows(rect: Rect) -> Option<(Rect, Rect)> {
    if rect.height < 2 {
        return None;
    }
    let top = rect.height / 2;
    Some((Rect::new(rect.x, rect.y, rect.width, top), Rect::new(rect.x, rect.y + top, rect.width, rect.height - top)))
}

/// After a scroll, tiles that received pixels from a lossy tile are lossy too.
fn move_lossy_marks(lossy: &mut [bool], grid: &TileGrid, src: Rect, dst_y: u16) {
    if lossy.len() != grid.len() || !lossy.iter().any(|l| *l) {
        return;
    }
    let before = lossy.to_vec();
    let tile = u32::from(grid.tile);
    let columns = (u32::from(src.x) / tile) as usize..(src.right().div_ceil(tile) as usize).min(grid.columns);
    let dst_rows = (u32::from(dst_y) / tile) as usize
        ..((u32::from(dst_y) + u32::from(src.height)).div_ceil(tile) as usize).min(grid.rows);
    for dst_row in dst_rows {
        // Source rows that land in this destination tile row.
        let dst_top = (dst_row as u32 * tile).max(u32::from(dst_y));
        let dst_bottom = ((dst_row as u32 + 1) * tile).min(u32::from(dst_y) + u32::from(src.height));
        if dst_bottom <= dst_top {
            continue;
        }
        let src_top = dst_top - u32::from(dst_y) + u32::from(src.y);
        let src_bottom = dst_bottom - u32::from(dst_y) + u32::from(src.y);
        let src_rows = (src_top / tile) as usize..(src_bottom.div_ceil(tile) as usize).min(grid.rows);
        for column in columns.clone() {
            let from_lossy = src_rows.clone().any(|row| before[row * grid.columns + column]);
            lossy[dst_row * grid.columns + column] = from_lossy;
        }
    }
}

/// Solid, lossless-friendly (≤ 256 colours) or photo-like.
fn classify(frame: &Frame, rect: Rect, photo_colors: usize) -> TileKind {
    let stride = frame.stride();
    let bytes = frame.as_bytes();
    let at = |x: usize, y: usize| -> u32 {
        let i = y * stride + x * 4;
        u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], 0])
    };
    let first = at(usize::from(rect.x), usize::from(rect.y));
    let mut colors = ColorSet::new();
    let mut previous = first;
    colors.insert(first);
    let mut solid = true;
    for y in usize::from(rect.y)..rect.bottom() as usize {
        for x in usize::from(rect.x)..rect.right() as usize {
            let pixel = at(x, y);
            if pixel == previous {
                continue;
            }
            previous = pixel;
            solid = false;
            if colors.insert(pixel).is_none() || colors.len > photo_colors {
                return TileKind::Photo;
            }
        }
    }
    if solid {
        let [b, g, r, _] = first.to_le_bytes();
        TileKind::Solid([r, g, b])
    } else {
        TileKind::Lossless
    }
}

/// At most 256 colours, by open addressing (keys are 24-bit, so `u32::MAX` marks a free slot).
struct ColorSet {
    keys: [u32; 1024],
    indices: [u8; 1024],
    len: usize,
}

impl ColorSet {
    fn new() -> ColorSet {
        ColorSet { keys: [u32::MAX; 1024], indices: [0; 1024], len: 0 }
    }

    /// The colour's index, inserting it; `None` once a 257th colour appears.
    fn insert(&mut self, color: u32) -> Option<u8> {
        let mut slot = (color.wrapping_mul(0x9E37_79B1) >> 22) as usize;
        loop {
            if self.keys[slot] == color {
                return Some(self.indices[slot]);
            }
            if self.keys[slot] == u32::MAX {
                if self.len == 256 {
                    return None;
                }
                self.keys[slot] = color;
                self.indices[slot] = self.len as u8;
                self.len += 1;
                return Some(self.indices[slot]);
            }
            slot = (slot + 1) & 1023;
        }
    }
}

/// Fills `indices` with palette indices and returns the palette (`R G B` each), or `None` if
/// the rectangle has more than 256 colours.
fn palette(frame: &Frame, rect: Rect, indices: &mut Vec<u8>) -> Option<Vec<u8>> {
    let stride = frame.stride();
    let bytes = frame.as_bytes();
    let mut colors = ColorSet::new();
    let mut table: Vec<u8> = Vec::with_capacity(256 * 3);
    indices.clear();
    indices.reserve(rect.area());
    let (mut previous, mut previous_index) = (u32::MAX, 0u8);
    for y in usize::from(rect.y)..rect.bottom() as usize {
        let row = &bytes[y * stride + usize::from(rect.x) * 4..y * stride + rect.right() as usize * 4];
        for px in row.chunks_exact(4) {
            let pixel = u32::from_le_bytes([px[0], px[1], px[2], 0]);
            if pixel != previous {
                let before = colors.len;
                previous_index = colors.insert(pixel)?;
                if colors.len > before {
                    table.extend_from_slice(&[px[2], px[1], px[0]]);
                }
                previous = pixel;
            }
            indices.push(previous_index);
        }
    }
    Some(table)
}

/// Copies a rectangle as `R G B` bytes.
fn copy_rgb(frame: &Frame, rect: Rect, out: &mut Vec<u8>) {
    let stride = frame.stride();
    out.clear();
    out.reserve(rect.area() * 3);
    for y in usize::from(rect.y)..rect.bottom() as usize {
        let row = &frame.as_bytes()[y * stride + usize::from(rect.x) * 4..y * stride + rect.right() as usize * 4];
        for px in row.chunks_exact(4) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
}

/// Copies a rectangle as `B G R X` bytes.
fn copy_rect(frame: &Frame, rect: Rect, out: &mut Vec<u8>) {
    let stride = frame.stride();
    out.clear();
    for y in usize::from(rect.y)..rect.bottom() as usize {
        out.extend_from_slice(
            &frame.as_bytes()[y * stride + usize::from(rect.x) * 4..y * stride + rect.right() as usize * 4],
        );
    }
}

/// Bounds on what a [`Decoder`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Widest frame.
    pub max_width: u16,
    /// Tallest frame.
    pub max_height: u16,
}

impl Default for Limits {
    /// 7680 × 4320 (8K UHD): at most 133 MB of frame.
    fn default() -> Self {
        Limits { max_width: 7680, max_height: 4320 }
    }
}

/// Why an update was not (completely) applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is larger than the decoder's [`Limits`].
    TooLarge,
    /// An op's data did not decode (bad LZ4, bad JPEG, wrong size, palette index out of range).
    Malformed,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DecodeError::TooLarge => "screen update larger than the decoder's limits",
            DecodeError::Malformed => "malformed screen update",
        })
    }
}

impl core::error::Error for DecodeError {}

/// What applying one part did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The part completed its frame: present it.
    pub frame_complete: bool,
    /// Bounding box of the pixels changed.
    pub damage: Option<Rect>,
}

/// Rebuilds the frames of one monitor from `Update` parts.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    frame: Frame,
    /// The (frame, part) expected next; `None` before the first part.
    expected: Option<(u32, u16)>,
    needs_refresh: bool,
    /// Inside a refresh frame that has had no gap so far.
    in_clean_refresh: bool,
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder with an empty frame; it needs a refresh first.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            frame: Frame::new(0, 0),
            expected: None,
            needs_refresh: true,
            in_clean_refresh: false,
            scratch: Vec::new(),
        }
    }

    /// The current frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// Whether parts were lost (or none arrived yet) so the frame may be wrong: the viewer
    /// should send `Refresh` (rate-limited). Cleared by a complete refresh frame with no gap.
    pub const fn needs_refresh(&self) -> bool {
        self.needs_refresh
    }

    /// Applies one parsed part. On error the ops before the bad one stay applied and the
    /// decoder needs a refresh.
    pub fn apply(&mut self, update: &Update<'_>) -> Result<Applied, DecodeError> {
        if update.width > self.limits.max_width || update.height > self.limits.max_height {
            self.needs_refresh = true;
            return Err(DecodeError::TooLarge);
        }
        if update.width != self.frame.width() || update.height != self.frame.height() {
            self.frame.resize(update.width, update.height);
            self.needs_refresh = true;
            self.in_clean_refresh = false;
        }
        let in_order = self.expected == Some((update.frame, update.part));
        if update.is_refresh() && update.part == 0 {
            self.in_clean_refresh = true;
        } else if !in_order {
            self.needs_refresh = true;
            self.in_clean_refresh = false;
        }
        self.expected = Some(if update.is_last() {
            (update.frame.wrapping_add(1), 0)
        } else {
            (update.frame, update.part.wrapping_add(1))
        });
        let mut damage: Option<Rect> = None;
        for op in update.ops() {
            let rect = match self.apply_op(&op) {
                Ok(rect) => rect,
                Err(error) => {
                    self.needs_refresh = true;
                    self.in_clean_refresh = false;
                    return Err(error);
                }
            };
            damage = Some(match damage {
                None => rect,
                Some(d) => {
                    let x = d.x.min(rect.x);
                    let y = d.y.min(rect.y);
                    let right = d.right().max(rect.right());
                    let bottom = d.bottom().max(rect.bottom());
                    Rect::new(x, y, (right - u32::from(x)) as u16, (bottom - u32::from(y)) as u16)
                }
            });
        }
        if update.is_last() && self.in_clean_refresh {
            self.needs_refresh = false;
            self.in_clean_refresh = false;
        }
        Ok(Applied { frame_complete: update.is_last(), damage })
    }

    fn apply_op(&mut self, op: &Op<'_>) -> Result<Rect, DecodeError> {
        let (width, height) = (self.frame.width(), self.frame.height());
        let check = |rect: &Rect| {
            if rect.is_empty() || !rect.fits_in(width, height) { Err(DecodeError::Malformed) } else { Ok(()) }
        };
        match *op {
            Op::Copy { src, dst_x, dst_y } => {
                if !self.frame.copy_within(src, dst_x, dst_y) {
                    return Err(DecodeError::Malformed);
                }
                Ok(Rect::new(dst_x, dst_y, src.width, src.height))
            }
            Op::Fill { rect, rgb } => {
                check(&rect)?;
                self.frame.fill(rect, rgb);
                Ok(rect)
            }
            Op::Raw { rect, lz4 } => {
                check(&rect)?;
                let len = rect.area() * 3;
                if rect.area() > MAX_RECT_PIXELS {
                    return Err(DecodeError::Malformed);
                }
                self.scratch.resize(len, 0);
                let written = lz4_flex::block::decompress_into(lz4, &mut self.scratch[..len])
                    .map_err(|_| DecodeError::Malformed)?;
                if written != len {
                    return Err(DecodeError::Malformed);
                }
                let stride = self.frame.stride();
                let data = self.frame.as_bytes_mut();
                for (row, rgb) in self.scratch[..len].chunks_exact(usize::from(rect.width) * 3).enumerate() {
                    let start = (usize::from(rect.y) + row) * stride + usize::from(rect.x) * 4;
                    let dst = &mut data[start..start + usize::from(rect.width) * 4];
                    for (px, src) in dst.chunks_exact_mut(4).zip(rgb.chunks_exact(3)) {
                        px.copy_from_slice(&[src[2], src[1], src[0], 0]);
                    }
                }
                Ok(rect)
            }
            Op::Palette { rect, colors, lz4 } => {
                check(&rect)?;
                let len = rect.area();
                let count = colors.len() / 3;
                if len > MAX_RECT_PIXELS || count == 0 || count > 256 || colors.len() % 3 != 0 {
                    return Err(DecodeError::Malformed);
                }
                self.scratch.resize(len, 0);
                let written = lz4_flex::block::decompress_into(lz4, &mut self.scratch[..len])
                    .map_err(|_| DecodeError::Malformed)?;
                if written != len {
                    return Err(DecodeError::Malformed);
                }
                let mut bgrx = [[0u8; 4]; 256];
                for (entry, rgb) in bgrx.iter_mut().zip(colors.chunks_exact(3)) {
                    *entry = [rgb[2], rgb[1], rgb[0], 0];
                }
                let stride = self.frame.stride();
                let data = self.frame.as_bytes_mut();
                for (row, indices) in self.scratch[..len].chunks_exact(usize::from(rect.width)).enumerate() {
                    let start = (usize::from(rect.y) + row) * stride + usize::from(rect.x) * 4;
                    let dst = &mut data[start..start + usize::from(rect.width) * 4];
                    for (px, &index) in dst.chunks_exact_mut(4).zip(indices) {
                        if usize::from(index) >= count {
                            return Err(DecodeError::Malformed);
                        }
                        px.copy_from_slice(&bgrx[usize::from(index)]);
                    }
                }
                Ok(rect)
            }
            Op::Jpeg { rect, data } => {
                check(&rect)?;
                if rect.area() > MAX_RECT_PIXELS {
                    return Err(DecodeError::Malformed);
                }
                let options = DecoderOptions::default()
                    .set_max_width(usize::from(rect.width))
                    .set_max_height(usize::from(rect.height))
                    .jpeg_set_out_colorspace(ColorSpace::BGRA);
                let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
                decoder.decode_headers().map_err(|_| DecodeError::Malformed)?;
                let size = decoder.dimensions().ok_or(DecodeError::Malformed)?;
                if size != (usize::from(rect.width), usize::from(rect.height))
                    || decoder.output_buffer_size() != Some(rect.area() * 4)
                {
                    return Err(DecodeError::Malformed);
                }
                self.scratch.resize(rect.area() * 4, 0);
                decoder.decode_into(&mut self.scratch[..rect.area() * 4]).map_err(|_| DecodeError::Malformed)?;
                let stride = self.frame.stride();
                let frame = self.frame.as_bytes_mut();
                let row_bytes = usize::from(rect.width) * 4;
                for (row, src) in self.scratch[..rect.area() * 4].chunks_exact(row_bytes).enumerate() {
                    let start = (usize::from(rect.y) + row) * stride + usize::from(rect.x) * 4;
                    frame[start..start + row_bytes].copy_from_slice(src);
                }
                Ok(rect)
            }
        }
    }
}

/// Tracks the pointer and builds `Cursor` messages: the shape only when its serial changed
/// (or after [`CursorEncoder::request_shape`]), nothing when neither position nor shape did.
#[derive(Debug, Default)]
pub struct CursorEncoder {
    last: Option<(i16, i16, u32)>,
    shape_sent: Option<u32>,
}

impl CursorEncoder {
    /// A tracker that has sent nothing yet.
    pub fn new() -> CursorEncoder {
        CursorEncoder::default()
    }

    /// Send the shape again with the next message (a viewer joined or asked for a refresh).
    pub fn request_shape(&mut self) {
        self.shape_sent = None;
        self.last = None;
    }

    /// The `Cursor` payload for `image`, or `None` if nothing changed. A shape larger than
    /// [`MAX_CURSOR_SIDE`](crate::message::MAX_CURSOR_SIDE), or one that does not fit a
    /// payload, is left out (the viewer draws its default pointer).
    pub fn encode(&mut self, image: &crate::backend::CursorImage, visible: bool) -> Option<Vec<u8>> {
        use crate::message::{Cursor, CursorShape, MAX_CURSOR_SIDE, ScreenMessage};
        let state = (image.x, image.y, image.serial);
        let needs_shape = self.shape_sent != Some(image.serial);
        if self.last == Some(state) && !needs_shape {
            return None;
        }
        let side = 1..=MAX_CURSOR_SIDE;
        let pixels = usize::from(image.width) * usize::from(image.height) * 4;
        let lz4 = (needs_shape
            && side.contains(&image.width)
            && side.contains(&image.height)
            && image.hot_x < image.width
            && image.hot_y < image.height
            && image.rgba.len() == pixels)
            .then(|| lz4_flex::block::compress(&image.rgba))
            .filter(|lz4| lz4.len() + 32 <= MAX_PAYLOAD_LEN);
        let shape = lz4.as_deref().map(|lz4| CursorShape {
            hot_x: image.hot_x,
            hot_y: image.hot_y,
            width: image.width,
            height: image.height,
            lz4,
        });
        let message = ScreenMessage::Cursor(Cursor { x: image.x, y: image.y, visible, serial: image.serial, shape });
        let mut out = vec![0u8; MAX_PAYLOAD_LEN];
        let len = message.emit(&mut out)?;
        out.truncate(len);
        self.last = Some(state);
        self.shape_sent = Some(image.serial);
        Some(out)
    }
}

/// The `R G B A` pixels of a received cursor shape; `None` if the LZ4 block is bad.
pub fn decode_cursor_shape(shape: &crate::message::CursorShape<'_>) -> Option<Vec<u8>> {
    let len = usize::from(shape.width) * usize::from(shape.height) * 4;
    let mut out = vec![0u8; len];
    let written = lz4_flex::block::decompress_into(shape.lz4, &mut out).ok()?;
    (written == len).then_some(out)
}

/// The `Layout` payload for `monitors` (at most [`MAX_MONITORS`](crate::message::MAX_MONITORS)).
pub fn layout_message(monitors: &[crate::backend::Monitor]) -> Option<Vec<u8>> {
    use crate::message::{Layout, MonitorInfo, ScreenMessage};
    let monitors = monitors
        .iter()
        .map(|m| MonitorInfo { x: m.x, y: m.y, width: m.width, height: m.height, primary: m.primary })
        .collect();
    let mut out = vec![0u8; 256];
    let len = ScreenMessage::Layout(Layout { monitors }).emit(&mut out)?;
    out.truncate(len);
    Some(out)
}

//! The screen message format: the payload of `ContentType::Screen` data, in both directions.
//!
//! Every payload starts with a message-type byte; integers are big-endian; colours are `R G B`.
//! A parser refuses unknown types and op codes, flag bits it does not know, rectangles that are
//! empty or leave the frame, lengths past the end, and trailing bytes: [`ScreenMessage::parse`]
//! returns `None` and never panics. Every message fits one engine payload
//! ([`MAX_PAYLOAD_LEN`](lifeline_core::wire::MAX_PAYLOAD_LEN)).
//!
//! | type | message   | sent by | payload after the type byte                                         |
//! |------|-----------|---------|---------------------------------------------------------------------|
//! | 0x01 | `Update`  | sharer  | monitor u8, frame u32, part u16, flags u8, width u16, height u16, ops |
//! | 0x02 | `Cursor`  | sharer  | x i16, y i16, flags u8, serial u32, then the shape if flag 0x02      |
//! | 0x03 | `Layout`  | sharer  | count u8 (1..=16), monitors: x i16, y i16, width u16, height u16, flags u8 |
//! | 0x10 | `Ack`     | viewer  | monitor u8, frame u32, received u32                                  |
//! | 0x11 | `Refresh` | viewer  | monitor u8                                                           |
//!
//! `Update` ops (until the end of the payload; op byte, then):
//!
//! | op   | name      | fields                                                                  |
//! |------|-----------|-------------------------------------------------------------------------|
//! | 0x01 | `Copy`    | src x, y, width, height (u16 each), dst x, y (u16 each)                 |
//! | 0x02 | `Fill`    | x, y, width, height (u16 each), R G B                                   |
//! | 0x03 | `Raw`     | x, y, width, height, len u16, LZ4 block of width×height×3 bytes `R G B` |
//! | 0x04 | `Palette` | x, y, width, height, n−1 u8, n colours `R G B`, len u16, LZ4 block of width×height index bytes (each < n) |
//! | 0x05 | `Jpeg`    | x, y, width, height, len u16, a baseline JPEG of exactly width×height   |
//!
//! `Raw`, `Palette` and `Jpeg` cover at most [`MAX_RECT_PIXELS`] pixels, so a decoder's scratch
//! memory is bounded whatever a peer sends; the frame itself is bounded by the decoder's
//! [`Limits`](crate::codec::Limits). The rectangles of one `Update` add up to at most twice the
//! frame's area, which bounds the work per payload too (thousands of full-frame `Fill`s in
//! 16 KiB would otherwise cost seconds).

use crate::frame::Rect;
use lifeline_core::wire::{Reader, Writer};

/// Most pixels one `Raw`, `Palette` or `Jpeg` op covers (1024 × 64, sixteen 64 × 64 tiles).
pub const MAX_RECT_PIXELS: usize = 65_536;
/// Largest cursor image side, in pixels.
pub const MAX_CURSOR_SIDE: u16 = 256;
/// Most monitors a `Layout` lists.
pub const MAX_MONITORS: usize = 16;
/// Bytes of an `Update` before its ops.
pub const UPDATE_HEADER_LEN: usize = 13;
/// Bytes of a `Cursor` without a shape.
pub const CURSOR_HEADER_LEN: usize = 10;

/// `Update` flag: the last part of its frame; the viewer may present the frame.
pub const UPDATE_LAST: u8 = 0x01;
/// `Update` flag: this frame is a full refresh (every tile of the monitor is sent).
pub const UPDATE_REFRESH: u8 = 0x02;
/// `Cursor` flag: the pointer is visible.
pub const CURSOR_VISIBLE: u8 = 0x01;
/// `Cursor` flag: a shape follows (otherwise the shape of `serial` is already known).
pub const CURSOR_SHAPE: u8 = 0x02;
/// `Layout` monitor flag: the primary monitor.
pub const MONITOR_PRIMARY: u8 = 0x01;

mod message_type {
    pub(super) const UPDATE: u8 = 0x01;
    pub(super) const CURSOR: u8 = 0x02;
    pub(super) const LAYOUT: u8 = 0x03;
    pub(super) const ACK: u8 = 0x10;
    pub(super) const REFRESH: u8 = 0x11;
}

mod op_code {
    pub(super) const COPY: u8 = 0x01;
    pub(super) const FILL: u8 = 0x02;
    pub(super) const RAW: u8 = 0x03;
    pub(super) const PALETTE: u8 = 0x04;
    pub(super) const JPEG: u8 = 0x05;
}

/// One screen message, borrowing from the payload it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScreenMessage<'a> {
    /// Part of a frame of one monitor.
    Update(Update<'a>),
    /// Pointer position and, when it changed, its shape.
    Cursor(Cursor<'a>),
    /// The sharer's monitors (index = position in the list).
    Layout(Layout),
    /// The viewer received a whole frame: feedback for the rate controller.
    Ack {
        /// Monitor index.
        monitor: u8,
        /// The newest frame received completely.
        frame: u32,
        /// Screen payload bytes received so far on this session (wrapping).
        received: u32,
    },
    /// The viewer lost part of the stream (or just started): send every tile again.
    Refresh {
        /// Monitor index.
        monitor: u8,
    },
}

/// The header of an `Update` and its checked ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    /// Monitor index (see `Layout`).
    pub monitor: u8,
    /// Frame sequence number (wrapping).
    pub frame: u32,
    /// Part of the frame, from 0.
    pub part: u16,
    /// [`UPDATE_LAST`] and [`UPDATE_REFRESH`] bits.
    pub flags: u8,
    /// Frame width of the monitor.
    pub width: u16,
    /// Frame height of the monitor.
    pub height: u16,
    ops: &'a [u8],
}

/// One drawing operation of an `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// Copy a rectangle of the current frame (scrolling); reads complete before writes.
    Copy {
        /// Source rectangle.
        src: Rect,
        /// Destination left edge.
        dst_x: u16,
        /// Destination top edge.
        dst_y: u16,
    },
    /// One colour.
    Fill {
        /// Where.
        rect: Rect,
        /// `[r, g, b]`.
        rgb: [u8; 3],
    },
    /// Lossless `R G B` pixels, LZ4 block.
    Raw {
        /// Where.
        rect: Rect,
        /// LZ4 block of `width × height × 3` bytes.
        lz4: &'a [u8],
    },
    /// Lossless, up to 256 colours: palette and LZ4-compressed indices.
    Palette {
        /// Where.
        rect: Rect,
        /// `n × 3` bytes `R G B`, n in 1..=256.
        colors: &'a [u8],
        /// LZ4 block of `width × height` index bytes.
        lz4: &'a [u8],
    },
    /// Lossy: a baseline JPEG of exactly the rectangle's size.
    Jpeg {
        /// Where.
        rect: Rect,
        /// The JPEG file.
        data: &'a [u8],
    },
}

/// Pointer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor<'a> {
    /// Position in root-window (desktop) coordinates.
    pub x: i16,
    /// Position in root-window (desktop) coordinates.
    pub y: i16,
    /// Whether the pointer is shown.
    pub visible: bool,
    /// Identifies the shape; the same serial means the same shape.
    pub serial: u32,
    /// The shape, when it is sent.
    pub shape: Option<CursorShape<'a>>,
}

/// A cursor image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorShape<'a> {
    /// Hot spot.
    pub hot_x: u16,
    /// Hot spot.
    pub hot_y: u16,
    /// Width, 1..=[`MAX_CURSOR_SIDE`].
    pub width: u16,
    /// Height, 1..=[`MAX_CURSOR_SIDE`].
    pub height: u16,
    /// LZ4 block of `width × height × 4` bytes `R G B A` (straight alpha).
    pub lz4: &'a [u8],
}

/// Monitor geometry as the viewer needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MonitorInfo {
    /// Left edge on the desktop.
    pub x: i16,
    /// Top edge on the desktop.
    pub y: i16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// The primary monitor.
    pub primary: bool,
}

/// The sharer's monitors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// 1..=[`MAX_MONITORS`] monitors; index = position.
    pub monitors: Vec<MonitorInfo>,
}

impl<'a> ScreenMessage<'a> {
    /// Parses one payload; `None` if it is malformed in any way.
    pub fn parse(payload: &'a [u8]) -> Option<ScreenMessage<'a>> {
        let mut reader = Reader::new(payload);
        let message = match reader.u8()? {
            message_type::UPDATE => {
                let monitor = reader.u8()?;
                let frame = reader.u32()?;
                let part = reader.u16()?;
                let flags = reader.u8()?;
                let width = reader.u16()?;
                let height = reader.u16()?;
                if flags & !(UPDATE_LAST | UPDATE_REFRESH) != 0 || width == 0 || height == 0 {
                    return None;
                }
                let ops = reader.rest();
                let mut check = OpIter { reader: Reader::new(ops), width, height };
                // The ops of one update cover at most twice the frame (a scroll copy plus
                // disjoint tiles): this bounds a receiver's work per payload, not only its memory.
                let budget = 2 * u64::from(width) * u64::from(height);
                let mut covered = 0u64;
                while let Some(op) = check.next_checked()? {
                    covered += op.rect().area() as u64;
                    if covered > budget {
                        return None;
                    }
                }
                ScreenMessage::Update(Update { monitor, frame, part, flags, width, height, ops })
            }
            message_type::CURSOR => {
                let x = reader.i16()?;
                let y = reader.i16()?;
                let flags = reader.u8()?;
                let serial = reader.u32()?;
                if flags & !(CURSOR_VISIBLE | CURSOR_SHAPE) != 0 {
                    return None;
                }
                let shape = if flags & CURSOR_SHAPE != 0 {
                    let hot_x = reader.u16()?;
                    let hot_y = reader.u16()?;
                    let width = reader.u16()?;
                    let height = reader.u16()?;
                    let side = 1..=MAX_CURSOR_SIDE;
                    if !side.contains(&width) || !side.contains(&height) || hot_x >= width || hot_y >= height {
                        return None;
                    }
                    let len = usize::from(reader.u16()?);
                    Some(CursorShape { hot_x, hot_y, width, height, lz4: reader.take(len)? })
                } else {
                    None
                };
                ScreenMessage::Cursor(Cursor { x, y, visible: flags & CURSOR_VISIBLE != 0, serial, shape })
            }
            message_type::LAYOUT => {
                let count = usize::from(reader.u8()?);
                if !(1..=MAX_MONITORS).contains(&count) {
                    return None;
                }
                let mut monitors = Vec::with_capacity(count);
                for _ in 0..count {
                    let x = reader.i16()?;
                    let y = reader.i16()?;
                    let width = reader.u16()?;
                    let height = reader.u16()?;
                    let flags = reader.u8()?;
                    if width == 0 || height == 0 || flags & !MONITOR_PRIMARY != 0 {
                        return None;
                    }
                    monitors.push(MonitorInfo { x, y, width, height, primary: flags & MONITOR_PRIMARY != 0 });
                }
                ScreenMessage::Layout(Layout { monitors })
            }
            message_type::ACK => {
                ScreenMessage::Ack { monitor: reader.u8()?, frame: reader.u32()?, received: reader.u32()? }
            }
            message_type::REFRESH => ScreenMessage::Refresh { monitor: reader.u8()? },
            _ => return None,
        };
        reader.is_empty().then_some(message)
    }

    /// Writes the payload into `out`; `None` if it does not fit or a field is out of range.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match self {
            ScreenMessage::Update(update) => {
                update.header().write(&mut writer);
                writer.put(update.ops);
            }
            ScreenMessage::Cursor(cursor) => {
                writer.u8(message_type::CURSOR);
                writer.i16(cursor.x);
                writer.i16(cursor.y);
                let mut flags = if cursor.visible { CURSOR_VISIBLE } else { 0 };
                if cursor.shape.is_some() {
                    flags |= CURSOR_SHAPE;
                }
                writer.u8(flags);
                writer.u32(cursor.serial);
                if let Some(shape) = &cursor.shape {
                    writer.u16(shape.hot_x);
                    writer.u16(shape.hot_y);
                    writer.u16(shape.width);
                    writer.u16(shape.height);
                    writer.u16(u16::try_from(shape.lz4.len()).ok()?);
                    writer.put(shape.lz4);
                }
            }
            ScreenMessage::Layout(layout) => {
                if !(1..=MAX_MONITORS).contains(&layout.monitors.len()) {
                    return None;
                }
                writer.u8(message_type::LAYOUT);
                writer.u8(layout.monitors.len() as u8);
                for monitor in &layout.monitors {
                    writer.i16(monitor.x);
                    writer.i16(monitor.y);
                    writer.u16(monitor.width);
                    writer.u16(monitor.height);
                    writer.u8(if monitor.primary { MONITOR_PRIMARY } else { 0 });
                }
            }
            ScreenMessage::Ack { monitor, frame, received } => {
                writer.u8(message_type::ACK);
                writer.u8(*monitor);
                writer.u32(*frame);
                writer.u32(*received);
            }
            ScreenMessage::Refresh { monitor } => {
                writer.u8(message_type::REFRESH);
                writer.u8(*monitor);
            }
        }
        writer.finish()
    }
}

/// The fields of an `Update` before its ops; used by encoders to start a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateHeader {
    /// Monitor index.
    pub monitor: u8,
    /// Frame sequence number.
    pub frame: u32,
    /// Part number.
    pub part: u16,
    /// Flags.
    pub flags: u8,
    /// Frame width.
    pub width: u16,
    /// Frame height.
    pub height: u16,
}

impl UpdateHeader {
    /// Appends the [`UPDATE_HEADER_LEN`] header bytes.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let mut bytes = [0u8; UPDATE_HEADER_LEN];
        let mut writer = Writer::new(&mut bytes);
        self.write(&mut writer);
        out.extend_from_slice(&bytes);
    }

    fn write(&self, writer: &mut Writer<'_>) {
        writer.u8(message_type::UPDATE);
        writer.u8(self.monitor);
        writer.u32(self.frame);
        writer.u16(self.part);
        writer.u8(self.flags);
        writer.u16(self.width);
        writer.u16(self.height);
    }
}

impl<'a> Update<'a> {
    /// The header fields.
    pub const fn header(&self) -> UpdateHeader {
        UpdateHeader {
            monitor: self.monitor,
            frame: self.frame,
            part: self.part,
            flags: self.flags,
            width: self.width,
            height: self.height,
        }
    }

    /// Whether this is the last part of its frame.
    pub const fn is_last(&self) -> bool {
        self.flags & UPDATE_LAST != 0
    }

    /// Whether the frame is a full refresh.
    pub const fn is_refresh(&self) -> bool {
        self.flags & UPDATE_REFRESH != 0
    }

    /// The ops in order (already checked by `parse`).
    pub fn ops(&self) -> impl Iterator<Item = Op<'a>> + use<'a> {
        let mut iter = OpIter { reader: Reader::new(self.ops), width: self.width, height: self.height };
        core::iter::from_fn(move || iter.next_checked().flatten())
    }

    /// The raw op bytes.
    pub const fn op_bytes(&self) -> &'a [u8] {
        self.ops
    }
}

impl Op<'_> {
    /// The pixels the op writes (for `Copy`, its source, which has the same size).
    pub const fn rect(&self) -> Rect {
        match self {
            Op::Copy { src, .. } => *src,
            Op::Fill { rect, .. } | Op::Raw { rect, .. } | Op::Palette { rect, .. } | Op::Jpeg { rect, .. } => *rect,
        }
    }

    /// Appends the op's bytes; `None` (nothing appended) if a length does not fit its field.
    pub fn append_to(&self, out: &mut Vec<u8>) -> Option<()> {
        let start = out.len();
        let put_rect = |out: &mut Vec<u8>, code: u8, rect: &Rect| {
            out.push(code);
            for field in [rect.x, rect.y, rect.width, rect.height] {
                out.extend_from_slice(&field.to_be_bytes());
            }
        };
        match self {
            Op::Copy { src, dst_x, dst_y } => {
                put_rect(out, op_code::COPY, src);
                out.extend_from_slice(&dst_x.to_be_bytes());
                out.extend_from_slice(&dst_y.to_be_bytes());
            }
            Op::Fill { rect, rgb } => {
                put_rect(out, op_code::FILL, rect);
                out.extend_from_slice(rgb);
            }
            Op::Raw { rect, lz4 } => {
                let len = u16::try_from(lz4.len()).ok()?;
                put_rect(out, op_code::RAW, rect);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(lz4);
            }
            Op::Palette { rect, colors, lz4 } => {
                let len = u16::try_from(lz4.len()).ok()?;
                let count = colors.len() / 3;
                if colors.len() % 3 != 0 || !(1..=256).contains(&count) {
                    return None;
                }
                put_rect(out, op_code::PALETTE, rect);
                out.push((count - 1) as u8);
                out.extend_from_slice(colors);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(lz4);
            }
            Op::Jpeg { rect, data } => {
                let len = u16::try_from(data.len()).ok()?;
                put_rect(out, op_code::JPEG, rect);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(data);
            }
        }
        debug_assert!(out.len() > start);
        Some(())
    }

    /// Bytes [`Op::append_to`] writes.
    pub const fn encoded_len(&self) -> usize {
        1 + 8
            + match self {
                Op::Copy { .. } => 4,
                Op::Fill { .. } => 3,
                Op::Raw { lz4, .. } => 2 + lz4.len(),
                Op::Palette { colors, lz4, .. } => 1 + colors.len() + 2 + lz4.len(),
                Op::Jpeg { data, .. } => 2 + data.len(),
            }
    }
}

struct OpIter<'a> {
    reader: Reader<'a>,
    width: u16,
    height: u16,
}

impl<'a> OpIter<'a> {
    /// `Some(None)` at the end, `None` if malformed.
    fn next_checked(&mut self) -> Option<Option<Op<'a>>> {
        if self.reader.is_empty() {
            return Some(None);
        }
        let code = self.reader.u8()?;
        let rect = Rect::new(self.reader.u16()?, self.reader.u16()?, self.reader.u16()?, self.reader.u16()?);
        if rect.is_empty() || !rect.fits_in(self.width, self.height) {
            return None;
        }
        let bounded = rect.area() <= MAX_RECT_PIXELS;
        let op = match code {
            op_code::COPY => {
                let (dst_x, dst_y) = (self.reader.u16()?, self.reader.u16()?);
                if !Rect::new(dst_x, dst_y, rect.width, rect.height).fits_in(self.width, self.height) {
                    return None;
                }
                Op::Copy { src: rect, dst_x, dst_y }
            }
            op_code::FILL => Op::Fill { rect, rgb: self.reader.array()? },
            op_code::RAW if bounded => {
                let len = usize::from(self.reader.u16()?);
                Op::Raw { rect, lz4: self.reader.take(len)? }
            }
            op_code::PALETTE if bounded => {
                let count = usize::from(self.reader.u8()?) + 1;
                let colors = self.reader.take(count * 3)?;
                let len = usize::from(self.reader.u16()?);
                Op::Palette { rect, colors, lz4: self.reader.take(len)? }
            }
            op_code::JPEG if bounded => {
                let len = usize::from(self.reader.u16()?);
                Op::Jpeg { rect, data: self.reader.take(len)? }
            }
            _ => return None,
        };
        Some(Some(op))
    }
}

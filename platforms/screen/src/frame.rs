//! Frames of pixels and rectangles.
//!
//! A [`Frame`] is 32 bits per pixel in the byte order X11 delivers on little-endian machines for
//! depth 24/32: `B G R X` (the fourth byte is ignored everywhere), rows packed without padding.

/// A rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

impl Rect {
    /// A rectangle from its origin and size.
    pub const fn new(x: u16, y: u16, width: u16, height: u16) -> Rect {
        Rect { x, y, width, height }
    }

    /// Number of pixels.
    pub const fn area(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Whether it has no pixels.
    pub const fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// Right edge (exclusive), widened so it cannot overflow.
    pub const fn right(&self) -> u32 {
        self.x as u32 + self.width as u32
    }

    /// Bottom edge (exclusive), widened so it cannot overflow.
    pub const fn bottom(&self) -> u32 {
        self.y as u32 + self.height as u32
    }

    /// Whether it lies entirely inside a `width` × `height` area at the origin.
    pub const fn fits_in(&self, width: u16, height: u16) -> bool {
        self.right() <= width as u32 && self.bottom() <= height as u32
    }
}

/// An image of 32-bit `B G R X` pixels.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u16,
    height: u16,
    data: Vec<u8>,
}

impl core::fmt::Debug for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frame").field("width", &self.width).field("height", &self.height).finish_non_exhaustive()
    }
}

/// Bytes per pixel of a [`Frame`].
pub const BYTES_PER_PIXEL: usize = 4;

impl Frame {
    /// A black frame.
    pub fn new(width: u16, height: u16) -> Frame {
        Frame { width, height, data: vec![0; usize::from(width) * usize::from(height) * BYTES_PER_PIXEL] }
    }

    /// A frame over existing `B G R X` bytes; `None` unless `data` holds exactly
    /// `width × height × 4` bytes.
    pub fn from_bgrx(width: u16, height: u16, data: Vec<u8>) -> Option<Frame> {
        (data.len() == usize::from(width) * usize::from(height) * BYTES_PER_PIXEL).then_some(Frame {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub const fn width(&self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub const fn height(&self) -> u16 {
        self.height
    }

    /// Bytes per row.
    pub const fn stride(&self) -> usize {
        self.width as usize * BYTES_PER_PIXEL
    }

    /// The pixel bytes, row after row.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The pixel bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Changes the size, keeping the allocation when it is large enough; pixels become black.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.width = width;
        self.height = height;
        self.data.clear();
        self.data.resize(usize::from(width) * usize::from(height) * BYTES_PER_PIXEL, 0);
    }

    /// The `[r, g, b]` of one pixel, `None` outside the frame.
    pub fn rgb(&self, x: u16, y: u16) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = usize::from(y) * self.stride() + usize::from(x) * BYTES_PER_PIXEL;
        let px = self.data.get(at..at + 3)?;
        Some([px[2], px[1], px[0]])
    }

    /// Sets one pixel (ignored outside the frame).
    pub fn set_rgb(&mut self, x: u16, y: u16, [r, g, b]: [u8; 3]) {
        if x >= self.width || y >= self.height {
            return;
        }
        let at = usize::from(y) * self.stride() + usize::from(x) * BYTES_PER_PIXEL;
        if let Some(px) = self.data.get_mut(at..at + 4) {
            px.copy_from_slice(&[b, g, r, 0]);
        }
    }

    /// Fills a rectangle (clipped to the frame).
    pub fn fill(&mut self, rect: Rect, [r, g, b]: [u8; 3]) {
        let right = rect.right().min(u32::from(self.width)) as usize;
        let bottom = rect.bottom().min(u32::from(self.height)) as usize;
        let stride = self.stride();
        for y in usize::from(rect.y)..bottom {
            let row = &mut self.data[y * stride..(y + 1) * stride];
            for px in row[usize::from(rect.x) * 4..right * 4].chunks_exact_mut(4) {
                px.copy_from_slice(&[b, g, r, 0]);
            }
        }
    }

    /// Copies `src` (a rectangle of this frame) so that its top-left lands on `(dst_x, dst_y)`,
    /// as if the source were read completely before anything is written (overlap is fine).
    /// Returns `false`, changing nothing, if either rectangle leaves the frame.
    pub fn copy_within(&mut self, src: Rect, dst_x: u16, dst_y: u16) -> bool {
        let dst = Rect::new(dst_x, dst_y, src.width, src.height);
        if !src.fits_in(self.width, self.height) || !dst.fits_in(self.width, self.height) {
            return false;
        }
        let stride = self.stride();
        let row_bytes = usize::from(src.width) * 4;
        let copy_row = |data: &mut Vec<u8>, row: usize| {
            let from = (usize::from(src.y) + row) * stride + usize::from(src.x) * 4;
            let to = (usize::from(dst_y) + row) * stride + usize::from(dst_x) * 4;
            data.copy_within(from..from + row_bytes, to);
        };
        // Rows in the order that never overwrites a source row before it is read.
        if dst_y > src.y {
            for row in (0..usize::from(src.height)).rev() {
                copy_row(&mut self.data, row);
            }
        } else {
            for row in 0..usize::from(src.height) {
                copy_row(&mut self.data, row);
            }
        }
        true
    }

    /// The largest difference of any colour channel between two frames of the same size
    /// (the fourth byte is ignored); `None` if the sizes differ.
    pub fn max_channel_difference(&self, other: &Frame) -> Option<u8> {
        if self.width != other.width || self.height != other.height {
            return None;
        }
        let mut worst = 0u8;
        for (a, b) in self.data.chunks_exact(4).zip(other.data.chunks_exact(4)) {
            for channel in 0..3 {
                worst = worst.max(a[channel].abs_diff(b[channel]));
            }
        }
        Some(worst)
    }

    /// Mean absolute difference per colour channel between two frames of the same size.
    pub fn mean_channel_difference(&self, other: &Frame) -> Option<f64> {
        if self.width != other.width || self.height != other.height {
            return None;
        }
        let mut total = 0u64;
        for (a, b) in self.data.chunks_exact(4).zip(other.data.chunks_exact(4)) {
            for channel in 0..3 {
                total += u64::from(a[channel].abs_diff(b[channel]));
            }
        }
        let samples = (self.data.len() / 4 * 3).max(1);
        Some(total as f64 / samples as f64)
    }
}

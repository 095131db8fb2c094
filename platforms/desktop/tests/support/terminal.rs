//! What a person would see on a terminal: the raw bytes a program writes to its pseudo-terminal,
//! played on a small screen model (enough of VT100/xterm for crossterm and ratatui: cursor
//! moves, erase, alternate screen, text), so a test can ask "does the screen show X" however
//! the program chose to draw it.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bytes written so far, read on a background thread.
#[derive(Clone, Default)]
pub struct RawOutput {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl RawOutput {
    /// Reads `reader` to its end on a thread.
    pub fn capture(mut reader: impl Read + Send + 'static) -> RawOutput {
        let output = RawOutput::default();
        let bytes = Arc::clone(&output.bytes);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                bytes.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        output
    }

    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    /// The screen as it is now (`rows` × `columns`).
    pub fn screen(&self, rows: usize, columns: usize) -> Screen {
        let mut screen = Screen::new(rows, columns);
        screen.feed(&self.bytes());
        screen
    }

    /// Waits until the screen shows `text` (on one row); returns the screen.
    pub fn wait_for(&self, rows: usize, columns: usize, text: &str, limit: Duration) -> Screen {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen(rows, columns);
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {text:?}; it shows:\n{}", screen.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A grid of characters: the main screen and the alternate one.
pub struct Screen {
    rows: usize,
    columns: usize,
    main: Vec<Vec<char>>,
    alternate: Option<Vec<Vec<char>>>,
    row: usize,
    column: usize,
    saved_main_cursor: (usize, usize),
}

impl Screen {
    fn new(rows: usize, columns: usize) -> Screen {
        Screen {
            rows,
            columns,
            main: vec![vec![' '; columns]; rows],
            alternate: None,
            row: 0,
            column: 0,
            saved_main_cursor: (0, 0),
        }
    }

    /// The rows shown, trailing spaces trimmed.
    pub fn lines(&self) -> Vec<String> {
        let grid = self.alternate.as_ref().unwrap_or(&self.main);
        grid.iter().map(|row| row.iter().collect::<String>().trim_end().to_owned()).collect()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    pub fn contains(&self, text: &str) -> bool {
        self.lines().iter().any(|line| line.contains(text))
    }

    /// Whether the alternate screen (a full-screen program) is showing.
    pub fn is_alternate(&self) -> bool {
        self.alternate.is_some()
    }

    fn grid(&mut self) -> &mut Vec<Vec<char>> {
        self.alternate.as_mut().unwrap_or(&mut self.main)
    }

    fn feed(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut chars = text.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut parameters = String::new();
                        let mut last = None;
                        for next in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&next) {
                                last = Some(next);
                                break;
                            }
                            parameters.push(next);
                        }
                        if let Some(last) = last {
                            self.csi(&parameters, last);
                        }
                    }
                    Some(']') => {
                        // Operating system command: up to BEL or ESC \.
                        while let Some(next) = chars.next() {
                            if next == '\x07' || (next == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    Some('(' | ')') => {
                        chars.next();
                    }
                    _ => {}
                },
                '\r' => self.column = 0,
                '\n' => self.line_feed(),
                '\x08' => self.column = self.column.saturating_sub(1),
                '\t' => self.column = ((self.column / 8) + 1) * 8,
                ch if ch.is_control() => {}
                ch => {
                    if self.column >= self.columns {
                        self.column = 0;
                        self.line_feed();
                    }
                    let (row, column) = (self.row, self.column);
                    self.grid()[row][column] = ch;
                    self.column += 1;
                }
            }
        }
    }

    fn line_feed(&mut self) {
        if self.row + 1 < self.rows {
            self.row += 1;
        } else {
            let columns = self.columns;
            let grid = self.grid();
            grid.remove(0);
            grid.push(vec![' '; columns]);
        }
    }

    fn csi(&mut self, parameters: &str, last: char) {
        let private = parameters.starts_with('?');
        let numbers: Vec<usize> =
            parameters.trim_start_matches('?').split(';').map(|p| p.parse().unwrap_or(0)).collect();
        let first = |default: usize| numbers.first().copied().filter(|n| *n != 0).unwrap_or(default);
        let (rows, columns) = (self.rows, self.columns);
        match (private, last) {
            (false, 'H' | 'f') => {
                self.row = (first(1) - 1).min(rows - 1);
                self.column = (numbers.get(1).copied().filter(|n| *n != 0).unwrap_or(1) - 1).min(columns - 1);
            }
            (false, 'A') => self.row = self.row.saturating_sub(first(1)),
            (false, 'B') => self.row = (self.row + first(1)).min(rows - 1),
            (false, 'C') => self.column = (self.column + first(1)).min(columns - 1),
            (false, 'D') => self.column = self.column.saturating_sub(first(1)),
            (false, 'G') => self.column = (first(1) - 1).min(columns - 1),
            (false, 'J') => {
                let (row, column) = (self.row, self.column);
                let grid = self.grid();
                match numbers.first().copied().unwrap_or(0) {
                    0 => {
                        grid[row][column..].fill(' ');
                        grid[row + 1..].iter_mut().for_each(|line| line.fill(' '));
                    }
                    1 => {
                        grid[..row].iter_mut().for_each(|line| line.fill(' '));
                        grid[row][..=column.min(columns - 1)].fill(' ');
                    }
                    _ => grid.iter_mut().for_each(|line| line.fill(' ')),
                }
            }
            (false, 'K') => {
                let (row, column) = (self.row, self.column.min(columns));
                let grid = self.grid();
                match numbers.first().copied().unwrap_or(0) {
                    0 => grid[row][column..].fill(' '),
                    1 => grid[row][..column].fill(' '),
                    _ => grid[row].fill(' '),
                }
            }
            (true, 'h') if numbers.contains(&1049) => {
                self.saved_main_cursor = (self.row, self.column);
                self.alternate = Some(vec![vec![' '; columns]; rows]);
            }
            (true, 'l') if numbers.contains(&1049) => {
                self.alternate = None;
                (self.row, self.column) = self.saved_main_cursor;
            }
            _ => {}
        }
    }
}

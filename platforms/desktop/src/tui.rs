//! The full-screen terminal UI of `lifeline join` (ratatui): the state it shows, how keys act
//! on it, and the terminal it runs on. A status line always on top (who is connected, who the
//! broker says the provider is, the check code, what is allowed, what is asked for), the session
//! log, the consent prompt when one is pending, and the input line. Keys: `a` / `d` allow or deny
//! the prompt shown while the input line is empty; F2 / Ctrl-R take back everything allowed at
//! once; F10 / Ctrl-E (or Ctrl-C, Ctrl-D) end the session (asks for `y` first); PageUp /
//! PageDown scroll the log, Home / End go to its first / latest line.
//!
//! Consent answers come only from keys read from this terminal: nothing the other side sends
//! can press a key. The terminal (raw mode, alternate screen) is restored when the UI stops, and
//! by a panic hook if the program panics.
//!
//! All output of the session goes through [`say`]: to stdout in line mode, to the log here
//! while the UI runs.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout};
use ratatui::prelude::CrosstermBackend;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::{Frame, Terminal};
use tokio::sync::mpsc;

/// Lines of log kept (older ones are dropped).
const LOG_LINES: usize = 2000;

/// What the status line shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// `(name, role)` of everyone connected, this side first.
    pub(crate) members: Vec<(String, String)>,
    /// The provider as the broker verified it (`NAME, ORGANISATION`), when joined through one.
    pub(crate) verified: Option<String>,
    /// The check code, once known (`123 456`).
    pub(crate) check_code: Option<String>,
    /// Capabilities allowed, in words (`files`).
    pub(crate) granted: Vec<String>,
    /// Capabilities asked for and not answered yet, in words, oldest first.
    pub(crate) pending: Vec<String>,
    /// What is going on right now that the customer must not miss ("screen shared", "THE
    /// PROVIDER HAS CONTROL"), shown in red.
    pub(crate) now: Vec<String>,
}

/// What a key asks the session to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing for the session (the screen may have changed).
    None,
    /// A line typed and Enter: chat or a `/command`, as in line mode.
    Line(String),
    /// Allow the capability (its word).
    Allow(String),
    /// Deny the capability (its word).
    Deny(String),
    /// Take back everything allowed.
    RevokeAll,
    /// End the session (confirmed).
    End,
}

/// The screen's state.
#[derive(Debug, Default)]
pub(crate) struct Screen {
    pub(crate) status: Status,
    log: VecDeque<String>,
    /// Lines between the bottom of the log view and the latest line (0: following the log).
    scrolled: usize,
    /// Log lines the last draw had room for: one page.
    page: Cell<usize>,
    input: String,
    confirm_end: bool,
}

impl Screen {
    /// Adds a line to the session log.
    pub(crate) fn line(&mut self, text: &str) {
        for part in text.split('\n') {
            if self.log.len() == LOG_LINES {
                self.log.pop_front();
            }
            self.log.push_back(part.to_owned());
            // A reader scrolled back keeps seeing the same lines.
            if self.scrolled > 0 {
                self.scrolled = (self.scrolled + 1).min(self.log.len());
            }
        }
    }

    fn scroll_by(&mut self, lines: isize) {
        let top = self.log.len().saturating_sub(self.page.get());
        self.scrolled = self.scrolled.saturating_add_signed(lines).min(top);
    }

    /// The prompt shown, if any: the oldest capability asked for.
    pub(crate) fn prompt(&self) -> Option<&str> {
        self.status.pending.first().map(String::as_str)
    }

    /// Acts on a key.
    pub(crate) fn key(&mut self, key: KeyEvent) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if self.confirm_end {
            self.confirm_end = false;
            return match key.code {
                KeyCode::Char('y' | 'Y') => Action::End,
                _ => {
                    self.line("The session goes on.");
                    Action::None
                }
            };
        }
        match key.code {
            KeyCode::F(2) => Action::RevokeAll,
            KeyCode::Char('r') if ctrl => Action::RevokeAll,
            KeyCode::F(10) => self.ask_end(),
            KeyCode::Char('e') if ctrl => self.ask_end(),
            KeyCode::Char('c' | 'd') if ctrl => self.ask_end(),
            KeyCode::Char(c @ ('a' | 'd')) if self.input.is_empty() && !ctrl => match self.prompt() {
                Some(word) if c == 'a' => Action::Allow(word.to_owned()),
                Some(word) => Action::Deny(word.to_owned()),
                None => {
                    self.input.push(c);
                    Action::None
                }
            },
            KeyCode::Char(c) if !ctrl => {
                self.input.push(c);
                Action::None
            }
            KeyCode::Backspace => {
                self.input.pop();
                Action::None
            }
            KeyCode::Esc => {
                self.input.clear();
                Action::None
            }
            KeyCode::Enter if !self.input.is_empty() => Action::Line(std::mem::take(&mut self.input)),
            KeyCode::PageUp => {
                self.scroll_by(self.page.get().max(1) as isize);
                Action::None
            }
            KeyCode::PageDown => {
                self.scroll_by(-(self.page.get().max(1) as isize));
                Action::None
            }
            KeyCode::Home => {
                self.scroll_by(isize::MAX);
                Action::None
            }
            KeyCode::End => {
                self.scrolled = 0;
                Action::None
            }
            _ => Action::None,
        }
    }

    fn ask_end(&mut self) -> Action {
        self.confirm_end = true;
        Action::None
    }

    /// Draws the screen.
    pub(crate) fn draw(&self, frame: &mut Frame<'_>) {
        let prompt_height = if self.prompt().is_some() || self.confirm_end { 3 } else { 0 };
        let [status, log, prompt, input] = Layout::vertical([
            Constraint::Length(if self.status.verified.is_some() { 3 } else { 2 }),
            Constraint::Min(1),
            Constraint::Length(prompt_height),
            Constraint::Length(3),
        ])
        .areas(frame.area());
        frame.render_widget(Paragraph::new(self.status_lines()).wrap(Wrap { trim: false }), status);
        let shown = usize::from(log.height.saturating_sub(2));
        self.page.set(shown);
        let scrolled = self.scrolled.min(self.log.len().saturating_sub(shown));
        let first = self.log.len().saturating_sub(shown + scrolled);
        let lines: Vec<Line<'_>> = self.log.iter().skip(first).take(shown).map(|l| Line::raw(l.as_str())).collect();
        let title = if scrolled > 0 {
            format!(" Session · {scrolled} newer lines below: PageDown, End for the latest ")
        } else {
            " Session ".to_owned()
        };
        frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), log);
        if self.confirm_end {
            let text = Line::from(Span::styled(
                "End the session for everyone? y = end, any other key = go on",
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ));
            frame.render_widget(Paragraph::new(text).block(Block::bordered().title(" End? ")), prompt);
        } else if let Some(word) = self.prompt() {
            let text = Line::from(vec![
                Span::styled(
                    format!("The provider asks for: {word}. "),
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ),
                Span::raw("a = Allow, d = Deny (nothing is allowed unless you say so)"),
            ]);
            frame.render_widget(Paragraph::new(text).block(Block::bordered().title(" Consent ")), prompt);
        }
        let title = " Message or /command · F2/Ctrl-R take back everything · F10/Ctrl-E end ";
        frame.render_widget(Paragraph::new(self.input.as_str()).block(Block::bordered().title(title)), input);
    }

    fn status_lines(&self) -> Vec<Line<'_>> {
        let who = if self.status.members.is_empty() {
            "nobody yet".to_owned()
        } else {
            self.status.members.iter().map(|(name, role)| format!("{name} ({role})")).collect::<Vec<_>>().join(", ")
        };
        let code = self.status.check_code.as_deref().unwrap_or("…");
        let list = |words: &[String]| if words.is_empty() { "nothing".to_owned() } else { words.join(", ") };
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let mut lines = vec![
            Line::from(vec![
                Span::styled("Connected: ", bold),
                Span::raw(who),
                Span::styled("  Check code: ", bold),
                Span::raw(code.to_owned()),
            ]),
            Line::from(vec![
                Span::styled("You allow: ", bold),
                Span::styled(list(&self.status.granted), Style::new().fg(Color::Green)),
                Span::styled("  Asked: ", bold),
                Span::styled(list(&self.status.pending), Style::new().fg(Color::Yellow)),
            ]),
        ];
        if !self.status.now.is_empty() {
            let alert = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
            lines[1].spans.push(Span::styled("  Now: ", bold));
            lines[1].spans.push(Span::styled(self.status.now.join(", "), alert));
        }
        if let Some(verified) = &self.status.verified {
            lines.insert(
                1,
                Line::from(vec![Span::styled("Verified by the broker: ", bold), Span::raw(verified.as_str())]),
            );
        }
        lines
    }
}

/// Lines kept from the log and printed to the normal screen when the UI stops, so the end of
/// the session stays visible.
const LINES_KEPT_AT_EXIT: usize = 12;

/// What the session sends the UI.
enum Update {
    Line(String),
    Status(Status),
}

/// The UI's inbox while it runs; `None` in line mode.
static SINK: Mutex<Option<std_mpsc::Sender<Update>>> = Mutex::new(None);

/// Whether the full-screen view is running (else lines go to stdout).
pub(crate) fn is_running() -> bool {
    SINK.lock().is_ok_and(|sink| sink.is_some())
}

/// Shows a line: in the UI's log while it runs, else on stdout.
pub(crate) fn say(text: String) {
    let sink = SINK.lock().ok().and_then(|sink| sink.clone());
    match sink {
        Some(sink) => {
            if let Err(std_mpsc::SendError(Update::Line(text))) = sink.send(Update::Line(text)) {
                println!("{text}");
            }
        }
        None => println!("{text}"),
    }
}

/// Where a log line (`tracing`) goes: made for each line, it sends the line when dropped.
pub(crate) struct LogWriter {
    buffer: Vec<u8>,
}

/// A [`LogWriter`] (for `tracing_subscriber`'s `with_writer`).
pub(crate) fn log_writer() -> LogWriter {
    LogWriter { buffer: Vec::new() }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let sink = SINK.lock().ok().and_then(|sink| sink.clone());
        match sink {
            // Raw stderr would scribble over the full-screen view: the line goes to its log,
            // without the colour codes meant for a plain terminal.
            Some(sink) => {
                let text = without_escapes(&String::from_utf8_lossy(&self.buffer));
                let _ = sink.send(Update::Line(text.trim_end().to_owned()));
            }
            None => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), &self.buffer);
            }
        }
    }
}

/// Text without terminal escape sequences (`ESC [ … letter`) and other control characters.
fn without_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            if chars.next() == Some('[') {
                for next in chars.by_ref() {
                    if next.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if ch == '\n' || !ch.is_control() {
            out.push(ch);
        }
    }
    out
}

/// Updates the status line (nothing in line mode).
pub(crate) fn set_status(status: Status) {
    if let Some(sink) = SINK.lock().ok().and_then(|sink| sink.clone()) {
        let _ = sink.send(Update::Status(status));
    }
}

/// Whether the full-screen UI can run here: stdin and stdout are terminals with a size.
pub(crate) fn usable() -> bool {
    std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && terminal::size().is_ok_and(|(columns, rows)| columns >= 20 && rows >= 8)
}

/// The running UI: a thread that owns the terminal, reads keys and draws.
pub(crate) struct Ui {
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
    stop: std_mpsc::Sender<Update>,
}

/// Takes the terminal over (raw mode, alternate screen) and starts the UI thread. What keys ask
/// for goes to `actions`.
pub(crate) fn start(actions: mpsc::Sender<Action>) -> std::io::Result<Ui> {
    terminal::enable_raw_mode()?;
    if let Err(error) = execute!(std::io::stdout(), terminal::EnterAlternateScreen, cursor::Hide) {
        restore();
        return Err(error);
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let mut terminal = match Terminal::new(CrosstermBackend::new(std::io::stdout())) {
        Ok(terminal) => terminal,
        Err(error) => {
            restore();
            return Err(error);
        }
    };
    let (sender, updates) = std_mpsc::channel();
    if let Ok(mut sink) = SINK.lock() {
        *sink = Some(sender.clone());
    }
    let thread = std::thread::spawn(move || {
        let mut screen = Screen::default();
        run_screen(&mut terminal, &mut screen, &updates, &actions);
        restore();
        let kept = screen.log.len().saturating_sub(LINES_KEPT_AT_EXIT);
        screen.log.into_iter().skip(kept).collect()
    });
    Ok(Ui { thread: Some(thread), stop: sender })
}

impl Ui {
    /// Gives the terminal back and prints the last lines of the log on it.
    pub(crate) fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Ok(mut sink) = SINK.lock() {
            *sink = None;
        }
        // The thread stops when every sender is gone: ours is replaced by a closed one.
        self.stop = std_mpsc::channel().0;
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(lines) => {
                    for line in lines {
                        println!("{line}");
                    }
                }
                Err(_) => restore(),
            }
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The UI thread: draws, applies updates, reads keys, until the session side hangs up.
fn run_screen(
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    screen: &mut Screen,
    updates: &std_mpsc::Receiver<Update>,
    actions: &mpsc::Sender<Action>,
) {
    let mut dirty = true;
    loop {
        loop {
            match updates.try_recv() {
                Ok(Update::Line(text)) => screen.line(&text),
                Ok(Update::Status(status)) => screen.status = status,
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
            dirty = true;
        }
        if dirty {
            if terminal.draw(|frame| screen.draw(frame)).is_err() {
                return;
            }
            dirty = false;
        }
        match event::poll(Duration::from_millis(40)) {
            Ok(false) => {}
            Ok(true) => match event::read() {
                Ok(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                    dirty = true;
                    let action = screen.key(key);
                    if action != Action::None && actions.blocking_send(action).is_err() {
                        return;
                    }
                }
                Ok(TermEvent::Resize(..)) => dirty = true,
                Ok(_) => {}
                Err(_) => return,
            },
            Err(_) => return,
        }
    }
}

/// Leaves raw mode and the alternate screen (harmless when they are not on).
fn restore() {
    let _ = execute!(std::io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn screen_text(screen: &Screen) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|frame| screen.draw(frame)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn busy() -> Screen {
        let mut screen = Screen {
            status: Status {
                members: vec![("Bob".into(), "customer".into()), ("Ada (Helpdesk)".into(), "provider".into())],
                verified: None,
                check_code: Some("123 456".into()),
                granted: vec!["files".into()],
                pending: vec!["diagnostics".into()],
                now: Vec::new(),
            },
            ..Screen::default()
        };
        screen.line("Ada (Helpdesk): hello");
        screen
    }

    #[test]
    fn status_log_prompt_and_input_are_drawn() {
        let text = screen_text(&busy());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Connected: Bob (customer), Ada (Helpdesk) (provider)"), "{text}");
        assert!(lines[0].contains("Check code: 123 456"), "{text}");
        assert!(lines[1].contains("You allow: files") && lines[1].contains("Asked: diagnostics"), "{text}");
        assert!(text.contains("Ada (Helpdesk): hello"), "{text}");
        assert!(text.contains("The provider asks for: diagnostics. a = Allow, d = Deny"), "{text}");
        assert!(text.contains("F2/Ctrl-R take back everything"), "{text}");
    }

    #[test]
    fn the_broker_verified_provider_has_a_line_of_its_own() {
        let mut screen = busy();
        screen.status.verified = Some("Ada Lovelace, Example Helpdesk Ltd".into());
        let text = screen_text(&screen);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("Verified by the broker: Ada Lovelace, Example Helpdesk Ltd"), "{text}");
        assert!(lines[2].contains("You allow: files"), "{text}");
    }

    #[test]
    fn what_happens_now_is_on_the_status_line() {
        let mut screen = busy();
        screen.status.now = vec!["screen shared".into(), "THE PROVIDER HAS CONTROL".into()];
        let text = screen_text(&screen);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("Now: screen shared, THE PROVIDER HAS CONTROL"), "{text}");
    }

    #[test]
    fn nothing_yet_and_no_prompt() {
        let text = screen_text(&Screen::default());
        assert!(text.contains("Connected: nobody yet  Check code: …"), "{text}");
        assert!(text.contains("You allow: nothing  Asked: nothing"), "{text}");
        assert!(!text.contains("Consent"), "{text}");
    }

    #[test]
    fn keys_answer_the_prompt_revoke_and_end() {
        let mut screen = busy();
        assert_eq!(screen.key(key(KeyCode::Char('a'))), Action::Allow("diagnostics".into()));
        assert_eq!(screen.key(key(KeyCode::Char('d'))), Action::Deny("diagnostics".into()));
        assert_eq!(screen.key(key(KeyCode::F(2))), Action::RevokeAll);
        assert_eq!(screen.key(ctrl('r')), Action::RevokeAll);
        // End asks first; any other key goes on.
        assert_eq!(screen.key(key(KeyCode::F(10))), Action::None);
        assert!(screen_text(&screen).contains("End the session for everyone?"));
        assert_eq!(screen.key(key(KeyCode::Char('n'))), Action::None);
        assert!(screen_text(&screen).contains("The session goes on."));
        assert_eq!(screen.key(ctrl('e')), Action::None);
        assert_eq!(screen.key(key(KeyCode::Char('y'))), Action::End);
    }

    #[test]
    fn typing_goes_to_the_input_line() {
        let mut screen = busy();
        for c in "hi ad".chars() {
            assert_eq!(screen.key(key(KeyCode::Char(c))), Action::None);
        }
        assert!(screen_text(&screen).contains("hi ad"));
        screen.key(key(KeyCode::Backspace));
        assert_eq!(screen.key(key(KeyCode::Enter)), Action::Line("hi a".into()));
        assert_eq!(screen.key(key(KeyCode::Enter)), Action::None);
        // Without a prompt, `a` is just a letter.
        screen.status.pending.clear();
        assert_eq!(screen.key(key(KeyCode::Char('a'))), Action::None);
        assert_eq!(screen.key(key(KeyCode::Enter)), Action::Line("a".into()));
    }

    #[test]
    fn log_lines_lose_their_colour_codes() {
        assert_eq!(
            without_escapes("\x1b[2m2026-12-04\x1b[0m \x1b[33m WARN\x1b[0m receipt not stored\x07\n"),
            "2026-12-04  WARN receipt not stored\n"
        );
    }

    #[test]
    fn the_log_scrolls_back_and_returns_to_the_latest() {
        let mut screen = busy();
        for n in 0..100 {
            screen.line(&format!("line {n:03}"));
        }
        let text = screen_text(&screen);
        assert!(text.contains("line 099") && !text.contains("line 080"), "{text}");
        let page = screen.page.get();
        assert!(page >= 5, "page {page}");
        // One page up: the latest line is gone, the one a page above the first shown is there.
        screen.key(key(KeyCode::PageUp));
        let text = screen_text(&screen);
        assert!(!text.contains("line 099"), "{text}");
        assert!(text.contains(&format!("line {:03}", 99 - page)), "{text}");
        assert!(text.contains(&format!("{page} newer lines below")), "{text}");
        // A new line does not move what a reader scrolled back sees.
        let before: Vec<String> = text.lines().filter(|l| l.contains("line ")).map(str::to_owned).collect();
        screen.line("line 100");
        let after: Vec<String> =
            screen_text(&screen).lines().filter(|l| l.contains("line ")).map(str::to_owned).collect();
        assert_eq!(before, after);
        // Home goes to the oldest line, End back to the latest; PageDown never goes past it.
        screen.key(key(KeyCode::Home));
        assert!(screen_text(&screen).contains("Ada (Helpdesk): hello"));
        screen.key(key(KeyCode::End));
        let text = screen_text(&screen);
        assert!(text.contains("line 100") && text.contains(" Session "), "{text}");
        screen.key(key(KeyCode::PageDown));
        assert!(screen_text(&screen).contains("line 100"));
        // Typing still goes to the input line while scrolled.
        screen.key(key(KeyCode::PageUp));
        screen.key(key(KeyCode::Char('x')));
        assert_eq!(screen.key(key(KeyCode::Enter)), Action::Line("x".into()));
    }

    #[test]
    fn log_is_bounded_and_shows_the_latest() {
        let mut screen = Screen::default();
        for n in 0..LOG_LINES + 10 {
            screen.line(&format!("line {n}"));
        }
        assert_eq!(screen.log.len(), LOG_LINES);
        let text = screen_text(&screen);
        assert!(text.contains(&format!("line {}", LOG_LINES + 9)), "{text}");
        assert!(!text.contains("line 5\n"), "{text}");
    }
}

//! QEMU's JSON reader: lexer, streamer and parser (`qobject/json-*.c`).
//!
//! [`JsonStreamer`] is fed raw bytes and yields one result per complete
//! top-level value, exactly where QEMU's streamer would: a value ends when
//! braces and brackets balance (or go negative), a scalar at top level ends
//! at the next character.  It shares QEMU's extensions and quirks:
//! single-quoted strings, `\'` escapes, modified UTF-8 (`\u0000` is
//! accepted), and error recovery that skips input up to the next structural
//! character or control character after an error ("stray" bytes).

use crate::utf8::{decode_lossy, is_valid_codepoint, mod_utf8_codepoint};
use crate::value::{QDict, QObject};

const MAX_TOKEN_SIZE: usize = 64 << 20;
const MAX_TOKEN_COUNT: usize = 2 << 20;
const MAX_NESTING: i64 = 1 << 10;

/// One parsed message: a value, or the text of QEMU's parse error
/// (`"JSON parse error, ..."`), always class `GenericError`.
pub type JsonMessage = Result<QObject, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    String,
    /// A token that outgrew the lexer's size limit (QEMU passes on its lexer
    /// state; only its size matters, and the streamer rejects it).
    Oversized,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LexState {
    Recovery,
    DqStringEscape,
    DqString,
    SqStringEscape,
    SqString,
    Zero,
    ExpDigits,
    ExpSign,
    ExpE,
    Mantissa,
    MantissaDigits,
    Digits,
    Sign,
    Keyword,
    Start,
}

/// What the lexer table says for (state, byte).
enum Next {
    State(LexState),
    Token(TokenKind),
    Error,
}

/// QEMU's `json_lexer[][]`: the next state, and whether the byte is left for
/// the next round (QEMU's `LOOKAHEAD`).
fn transition(state: LexState, ch: u8) -> (Next, bool) {
    use LexState::*;
    let consume = |n: Next| (n, false);
    let lookahead = |n: Next| (n, true);
    match state {
        Recovery => match ch {
            b'\t' => consume(Next::State(Recovery)),
            0..=0x1F | 0xFE | 0xFF | b'[' | b']' | b'{' | b'}' | b':' | b',' => {
                lookahead(Next::State(Start))
            }
            _ => consume(Next::State(Recovery)),
        },
        DqStringEscape | SqStringEscape => match ch {
            0x20..=0xFD => consume(Next::State(if state == DqStringEscape {
                DqString
            } else {
                SqString
            })),
            _ => consume(Next::Error),
        },
        DqString | SqString => {
            let quote = if state == DqString { b'"' } else { b'\'' };
            match ch {
                b'\\' => consume(Next::State(if state == DqString {
                    DqStringEscape
                } else {
                    SqStringEscape
                })),
                c if c == quote => consume(Next::Token(TokenKind::String)),
                0x20..=0xFD => consume(Next::State(state)),
                _ => consume(Next::Error),
            }
        }
        Zero => match ch {
            b'0'..=b'9' => consume(Next::Error),
            b'.' => consume(Next::State(Mantissa)),
            _ => lookahead(Next::Token(TokenKind::Integer)),
        },
        ExpDigits => match ch {
            b'0'..=b'9' => consume(Next::State(ExpDigits)),
            _ => lookahead(Next::Token(TokenKind::Float)),
        },
        ExpSign | Mantissa => match ch {
            b'0'..=b'9' => consume(Next::State(if state == ExpSign {
                ExpDigits
            } else {
                MantissaDigits
            })),
            _ => consume(Next::Error),
        },
        ExpE => match ch {
            b'-' | b'+' => consume(Next::State(ExpSign)),
            b'0'..=b'9' => consume(Next::State(ExpDigits)),
            _ => consume(Next::Error),
        },
        MantissaDigits => match ch {
            b'0'..=b'9' => consume(Next::State(MantissaDigits)),
            b'e' | b'E' => consume(Next::State(ExpE)),
            _ => lookahead(Next::Token(TokenKind::Float)),
        },
        Digits => match ch {
            b'0'..=b'9' => consume(Next::State(Digits)),
            b'e' | b'E' => consume(Next::State(ExpE)),
            b'.' => consume(Next::State(Mantissa)),
            _ => lookahead(Next::Token(TokenKind::Integer)),
        },
        Sign => match ch {
            b'0' => consume(Next::State(Zero)),
            b'1'..=b'9' => consume(Next::State(Digits)),
            _ => consume(Next::Error),
        },
        Keyword => match ch {
            b'a'..=b'z' => consume(Next::State(Keyword)),
            _ => lookahead(Next::Token(TokenKind::Keyword)),
        },
        Start => match ch {
            b'"' => consume(Next::State(DqString)),
            b'\'' => consume(Next::State(SqString)),
            b'0' => consume(Next::State(Zero)),
            b'1'..=b'9' => consume(Next::State(Digits)),
            b'-' => consume(Next::State(Sign)),
            b'{' => consume(Next::Token(TokenKind::LCurly)),
            b'}' => consume(Next::Token(TokenKind::RCurly)),
            b'[' => consume(Next::Token(TokenKind::LSquare)),
            b']' => consume(Next::Token(TokenKind::RSquare)),
            b',' => consume(Next::Token(TokenKind::Comma)),
            b':' => consume(Next::Token(TokenKind::Colon)),
            b'a'..=b'z' => consume(Next::State(Keyword)),
            b' ' | b'\t' | b'\r' | b'\n' => consume(Next::State(Start)),
            _ => consume(Next::Error),
        },
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    text: Vec<u8>,
}

/// QEMU's JSON message parser: bytes in, complete values (or errors) out.
#[derive(Clone, Debug)]
pub struct JsonStreamer {
    state: LexState,
    token: Vec<u8>,
    tokens: Vec<Token>,
    brace_count: i64,
    bracket_count: i64,
    token_size: usize,
}

impl Default for JsonStreamer {
    fn default() -> Self {
        JsonStreamer::new()
    }
}

impl JsonStreamer {
    /// A streamer at the start of its input.
    pub fn new() -> JsonStreamer {
        JsonStreamer {
            state: LexState::Start,
            token: Vec::new(),
            tokens: Vec::new(),
            brace_count: 0,
            bracket_count: 0,
            token_size: 0,
        }
    }

    /// Feeds bytes; every message they complete is appended to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<JsonMessage>) {
        for &ch in bytes {
            self.feed_char(ch, out);
        }
    }

    /// End of input (`json_message_parser_flush`): finishes a pending scalar
    /// and parses whatever tokens are left.
    pub fn flush(&mut self, out: &mut Vec<JsonMessage>) {
        while self.state != LexState::Start {
            let (next, _) = transition(self.state, 0);
            self.apply(next, out);
        }
        if !self.tokens.is_empty() {
            let result = parse(&self.tokens);
            self.reset();
            out.push(result);
        }
    }

    fn feed_char(&mut self, ch: u8, out: &mut Vec<JsonMessage>) {
        loop {
            let (next, lookahead) = transition(self.state, ch);
            if !lookahead {
                self.token.push(ch);
            }
            self.apply(next, out);
            if !lookahead {
                break;
            }
        }
        if self.token.len() > MAX_TOKEN_SIZE {
            let text = std::mem::take(&mut self.token);
            self.process_token(TokenKind::Oversized, text, out);
            self.state = LexState::Start;
        }
    }

    fn apply(&mut self, next: Next, out: &mut Vec<JsonMessage>) {
        match next {
            Next::Token(kind) => {
                let text = std::mem::take(&mut self.token);
                self.process_token(kind, text, out);
                self.state = LexState::Start;
            }
            Next::State(LexState::Start) => {
                self.token.clear();
                self.state = LexState::Start;
            }
            Next::Error => {
                let text = std::mem::take(&mut self.token);
                let shown = text.split(|&b| b == 0).next().unwrap_or_default();
                self.reset();
                out.push(Err(format!(
                    "JSON parse error, stray '{}'",
                    decode_lossy(shown)
                )));
                self.state = LexState::Recovery;
            }
            Next::State(LexState::Recovery) => {
                self.token.clear();
                self.state = LexState::Recovery;
            }
            Next::State(state) => self.state = state,
        }
    }

    fn process_token(&mut self, kind: TokenKind, text: Vec<u8>, out: &mut Vec<JsonMessage>) {
        match kind {
            TokenKind::LCurly => self.brace_count += 1,
            TokenKind::RCurly => self.brace_count -= 1,
            TokenKind::LSquare => self.bracket_count += 1,
            TokenKind::RSquare => self.bracket_count -= 1,
            _ => {}
        }
        let limit = if self.token_size + text.len() + 1 > MAX_TOKEN_SIZE {
            Some("JSON token size limit exceeded")
        } else if self.tokens.len() + 1 > MAX_TOKEN_COUNT {
            Some("JSON token count limit exceeded")
        } else if self.bracket_count + self.brace_count > MAX_NESTING {
            Some("JSON nesting depth limit exceeded")
        } else {
            None
        };
        if let Some(msg) = limit {
            self.reset();
            out.push(Err(msg.to_string()));
            return;
        }
        self.token_size += text.len();
        self.tokens.push(Token { kind, text });
        let open = self.brace_count > 0 || self.bracket_count > 0;
        if open && self.brace_count >= 0 && self.bracket_count >= 0 {
            return;
        }
        let result = parse(&self.tokens);
        self.reset();
        out.push(result);
    }

    fn reset(&mut self) {
        self.brace_count = 0;
        self.bracket_count = 0;
        self.tokens.clear();
        self.token_size = 0;
    }
}

/// Parses one complete JSON text the way `qobject_from_json` does (used for
/// `--blockdev '{...}'`).  Empty input gives `Ok(None)`.  The first error
/// wins; a second value after a first one is "Expecting at most one JSON
/// value" (QEMU's `consume_json`).
pub fn parse_json_str(text: &str) -> Result<Option<QObject>, String> {
    let mut streamer = JsonStreamer::new();
    let mut out = Vec::new();
    streamer.feed(text.as_bytes(), &mut out);
    streamer.flush(&mut out);
    let mut result = None;
    for message in out {
        if result.is_some() {
            return Err("Expecting at most one JSON value".to_string());
        }
        result = Some(message?);
    }
    Ok(result)
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    err: Option<String>,
}

fn parse(tokens: &[Token]) -> JsonMessage {
    let mut p = Parser {
        tokens,
        pos: 0,
        err: None,
    };
    match p.value() {
        Some(v) if p.err.is_none() => Ok(v),
        _ => Err(p
            .err
            .unwrap_or_else(|| "JSON parse error, expecting value".to_string())),
    }
}

impl Parser<'_> {
    fn error(&mut self, msg: impl Into<String>) {
        if self.err.is_none() {
            self.err = Some(format!("JSON parse error, {}", msg.into()));
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn pop(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn value(&mut self) -> Option<QObject> {
        let Some(token) = self.peek() else {
            self.error("premature EOI");
            return None;
        };
        match token.kind {
            TokenKind::LCurly => self.object(),
            TokenKind::LSquare => self.array(),
            TokenKind::Integer | TokenKind::Float | TokenKind::String => self.literal(),
            TokenKind::Keyword => self.keyword(),
            _ => {
                self.error("expecting value");
                None
            }
        }
    }

    fn pair(&mut self, dict: &mut QDict) -> Option<()> {
        if self.peek().is_none() {
            self.error("premature EOI");
            return None;
        }
        let key = match self.value() {
            Some(QObject::Str(k)) => k,
            _ => {
                self.error("key is not a string in object");
                return None;
            }
        };
        match self.pop() {
            None => {
                self.error("premature EOI");
                return None;
            }
            Some(t) if t.kind != TokenKind::Colon => {
                self.error("missing : in object pair");
                return None;
            }
            Some(_) => {}
        }
        let Some(value) = self.value() else {
            self.error("Missing value in dict");
            return None;
        };
        if dict.contains_key(&key) {
            self.error("duplicate key");
            return None;
        }
        dict.insert(key, value);
        Some(())
    }

    fn object(&mut self) -> Option<QObject> {
        self.pop();
        let mut dict = QDict::new();
        match self.peek() {
            None => {
                self.error("premature EOI");
                return None;
            }
            Some(t) if t.kind == TokenKind::RCurly => {
                self.pop();
                return Some(QObject::Dict(dict));
            }
            Some(_) => {}
        }
        self.pair(&mut dict)?;
        loop {
            match self.pop() {
                None => {
                    self.error("premature EOI");
                    return None;
                }
                Some(t) if t.kind == TokenKind::RCurly => return Some(QObject::Dict(dict)),
                Some(t) if t.kind != TokenKind::Comma => {
                    self.error("expected separator in dict");
                    return None;
                }
                Some(_) => self.pair(&mut dict)?,
            }
        }
    }

    fn array(&mut self) -> Option<QObject> {
        self.pop();
        let mut list = Vec::new();
        match self.peek() {
            None => {
                self.error("premature EOI");
                return None;
            }
            Some(t) if t.kind == TokenKind::RSquare => {
                self.pop();
                return Some(QObject::List(list));
            }
            Some(_) => {}
        }
        let Some(first) = self.value() else {
            self.error("expecting value");
            return None;
        };
        list.push(first);
        loop {
            match self.pop() {
                None => {
                    self.error("premature EOI");
                    return None;
                }
                Some(t) if t.kind == TokenKind::RSquare => return Some(QObject::List(list)),
                Some(t) if t.kind != TokenKind::Comma => {
                    self.error("expected separator in list");
                    return None;
                }
                Some(_) => {
                    let Some(item) = self.value() else {
                        self.error("expecting value");
                        return None;
                    };
                    list.push(item);
                }
            }
        }
    }

    fn keyword(&mut self) -> Option<QObject> {
        let token = self.pop()?;
        match token.text.as_slice() {
            b"true" => Some(QObject::Bool(true)),
            b"false" => Some(QObject::Bool(false)),
            b"null" => Some(QObject::Null),
            other => {
                self.error(format!("invalid keyword '{}'", decode_lossy(other)));
                None
            }
        }
    }

    fn literal(&mut self) -> Option<QObject> {
        let token = self.pop()?;
        let text = std::str::from_utf8(&token.text).unwrap_or_default();
        match token.kind {
            TokenKind::String => self.string(&token.text).map(QObject::Str),
            TokenKind::Integer => Some(if let Ok(i) = text.parse::<i64>() {
                QObject::Int(i)
            } else if let (false, Ok(u)) = (text.starts_with('-'), text.parse::<u64>()) {
                QObject::Uint(u)
            } else {
                QObject::Double(text.parse().unwrap_or(f64::NAN))
            }),
            _ => Some(QObject::Double(text.parse().unwrap_or(f64::NAN))),
        }
    }

    /// `parse_string()`: unescapes a quoted token into a string.
    fn string(&mut self, text: &[u8]) -> Option<String> {
        let at = |i: usize| text.get(i).copied().unwrap_or(0);
        let quote = text[0];
        let mut out = String::new();
        let mut ptr = 1;
        while at(ptr) != quote {
            if at(ptr) == b'\\' {
                let beg = ptr;
                ptr += 1;
                let esc = at(ptr);
                ptr += 1;
                match esc {
                    b'"' => out.push('"'),
                    b'\'' => out.push('\''),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let mut cp = cvt4hex(text, ptr);
                        ptr += 4;
                        if (0xD800..=0xDBFF).contains(&cp)
                            && at(ptr) == b'\\'
                            && at(ptr + 1) == b'u'
                        {
                            let trailing = cvt4hex(text, ptr + 2);
                            cp = if (0xDC00..=0xDFFF).contains(&trailing) {
                                ptr += 6;
                                (0x10000 + ((cp & 0x3FF) << 10)) | (trailing & 0x3FF)
                            } else {
                                -1
                            };
                        }
                        match u32::try_from(cp)
                            .ok()
                            .filter(|&c| is_valid_codepoint(c))
                            .and_then(char::from_u32)
                        {
                            Some(ch) => out.push(ch),
                            None => {
                                let end = ptr.min(text.len());
                                self.error(format!(
                                    "{} is not a valid Unicode character",
                                    decode_lossy(&text[beg..end])
                                ));
                                return None;
                            }
                        }
                    }
                    _ => {
                        self.error("invalid escape sequence in string");
                        return None;
                    }
                }
            } else {
                let (cp, end) = mod_utf8_codepoint(text, ptr);
                match cp.and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        self.error("invalid UTF-8 sequence in string");
                        return None;
                    }
                }
                ptr = end;
            }
        }
        Some(out)
    }
}

/// Four hex digits at `text[pos..]`, or -1.
fn cvt4hex(text: &[u8], pos: usize) -> i32 {
    let mut cp = 0i32;
    for i in 0..4 {
        let digit = text.get(pos + i).and_then(|&b| (b as char).to_digit(16));
        match digit {
            Some(d) => cp = cp << 4 | d as i32,
            None => return -1,
        }
    }
    cp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Vec<JsonMessage> {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(input, &mut out);
        out
    }

    #[test]
    fn split_input_completes_once() {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(b"{\"a\":", &mut out);
        assert!(out.is_empty());
        s.feed(b"12}", &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn top_level_scalar_waits_for_lookahead() {
        assert!(run(b"123").is_empty());
        assert_eq!(run(b"123 ").len(), 1);
    }

    #[test]
    fn nesting_limit() {
        let deep = vec![b'['; 1025];
        let out = run(&deep);
        assert_eq!(
            out,
            vec![Err("JSON nesting depth limit exceeded".to_string())]
        );
    }
}

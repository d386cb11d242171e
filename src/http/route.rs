//! Channel paths: literal paths such as `/news` and room templates such as
//! `/chat/{room}`, how a request path matches them, and when two of them
//! overlap.
//!
//! Pure functions with table tests; the config validator and the request
//! router share them so that "overlapping paths" means the same thing in both.

use std::fmt;

/// The one placeholder a room template may contain.
const ROOM_PLACEHOLDER: &str = "{room}";

/// Longest room name accepted from a request path. Room names become map keys
/// and appear in `stats()`, so they are kept short and printable.
pub const MAX_ROOM_NAME_LEN: usize = 64;

/// A channel path, parsed once at configuration time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Room,
}

impl PathPattern {
    /// Parses `text` as a literal path or a template with one `{room}` segment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "write an absolute path such as \"/news\", or for rooms a template with one \"{room}\" segment such as \"/chat/{room}\"";
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path {text:?} must start with '/'; {hint}"));
        };
        if rest.is_empty() {
            return Ok(Self {
                segments: Vec::new(),
            });
        }
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            if segment == ROOM_PLACEHOLDER {
                if segments.contains(&Segment::Room) {
                    return Err(format!(
                        "path {text:?} has more than one {{room}} segment; {hint}"
                    ));
                }
                segments.push(Segment::Room);
            } else if segment.is_empty() || segment == "." || segment == ".." {
                return Err(format!(
                    "path {text:?} has an empty, '.' or '..' segment; {hint}"
                ));
            } else if let Some(bad) = segment.chars().find(|c| !is_path_char(*c)) {
                return Err(format!(
                    "path {text:?} contains {bad:?}, which is not allowed in a channel path; {hint}"
                ));
            } else {
                segments.push(Segment::Literal(segment.to_owned()));
            }
        }
        Ok(Self { segments })
    }

    /// Whether the pattern has a `{room}` segment.
    pub fn is_template(&self) -> bool {
        self.segments.contains(&Segment::Room)
    }

    /// Matches a request path. `Some(None)` is a literal match, `Some(Some(room))`
    /// a template match with the raw (unvalidated) room segment.
    pub fn matches<'p>(&self, path: &'p str) -> Option<Option<&'p str>> {
        let rest = path.strip_prefix('/')?;
        if self.segments.is_empty() {
            return rest.is_empty().then_some(None);
        }
        let mut room = None;
        let mut parts = rest.split('/');
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Room => room = Some(part),
            }
        }
        parts.next().is_none().then_some(room)
    }

    /// Whether some request path would match both patterns.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    _ => true,
                })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => write!(f, "/{literal}")?,
                Segment::Room => write!(f, "/{ROOM_PLACEHOLDER}")?,
            }
        }
        Ok(())
    }
}

/// Characters allowed in a literal path segment: RFC 3986 unreserved
/// characters plus a few sub-delimiters. No '%' so that the configured path
/// and the raw request path compare byte for byte.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

/// What a refusal says about a bad room name, wherever one is refused.
pub(crate) const ROOM_NAME_RULE: &str =
    "room names are 1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-', and do not start with '.'";

/// Whether `name` is an acceptable room name: 1 to 64 characters of
/// `[A-Za-z0-9_.-]`, not starting with a dot. `.` and `..` are path
/// segments that proxies and clients normalise away (`/chat/..` reaches the
/// server as `/`, or as another channel's path), and a leading dot is
/// refused with them so that no room name can be one.
pub fn is_valid_room_name(name: &str) -> bool {
    (1..=MAX_ROOM_NAME_LEN).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_templates() {
        for (text, template) in [
            ("/", false),
            ("/news", false),
            ("/a/b", false),
            ("/chat/{room}", true),
            ("/{room}/live", true),
        ] {
            let pattern = PathPattern::parse(text).unwrap();
            assert_eq!(pattern.is_template(), template, "{text}");
            assert_eq!(pattern.to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_paths() {
        for text in [
            "news",
            "",
            "/a//b",
            "/a/",
            "/chat/{room}/{room}",
            "/chat/{room",
            "/chat/x{room}",
            "/a b",
            "/a%20b",
            "/a/../b",
            "/a?x=1",
        ] {
            assert!(
                PathPattern::parse(text).is_err(),
                "{text} should be rejected"
            );
        }
    }

    #[test]
    fn matches_request_paths() {
        let cases = [
            ("/news", "/news", Some(None)),
            ("/news", "/news/", None),
            ("/news", "/newsx", None),
            ("/", "/", Some(None)),
            ("/", "/x", None),
            ("/chat/{room}", "/chat/lobby", Some(Some("lobby"))),
            ("/chat/{room}", "/chat/", Some(Some(""))),
            ("/chat/{room}", "/chat", None),
            ("/chat/{room}", "/chat/a/b", None),
            ("/{room}/live", "/x/live", Some(Some("x"))),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(
                PathPattern::parse(pattern).unwrap().matches(path),
                expected,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn detects_overlaps() {
        let cases = [
            ("/news", "/news", true),
            ("/news", "/chat", false),
            ("/chat/{room}", "/chat/lobby", true),
            ("/chat/{room}", "/{room}/lobby", true),
            ("/chat/{room}", "/chat", false),
            ("/chat/{room}", "/talk/{room}", false),
        ];
        for (a, b, expected) in cases {
            let (a, b) = (
                PathPattern::parse(a).unwrap(),
                PathPattern::parse(b).unwrap(),
            );
            assert_eq!(a.overlaps(&b), expected, "{a} vs {b}");
            assert_eq!(b.overlaps(&a), expected, "{b} vs {a}");
        }
    }

    #[test]
    fn validates_room_names() {
        for name in [
            "a",
            "lobby",
            "Room_1.2-3",
            "a.",
            "a..b",
            "-",
            &"x".repeat(64),
        ] {
            assert!(is_valid_room_name(name), "{name}");
        }
        for name in [
            "",
            ".",
            "..",
            "...",
            ".hidden",
            "..a",
            "a b",
            "ü",
            "a/b",
            "%41",
            "%2e%2e",
            &"x".repeat(65),
        ] {
            assert!(!is_valid_room_name(name), "{name}");
        }
    }
}

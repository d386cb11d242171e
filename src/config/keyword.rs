//! Keywords in the file (`kind = "room"`, `on_exceed = "close"`): enums that
//! serde reads and writes through their `rename_all` names, so each word is
//! spelled in exactly one place, the enum's serde attribute.
//!
//! The raw mirror holds a keyword as a [`Word`], which keeps a word serde
//! does not know instead of failing the whole file: validation then reports
//! it at its own line and column, together with every other problem, and
//! lists the words that are valid (read from serde as well, by [`words`]).

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{DeserializeOwned, IntoDeserializer, value},
};

use super::{AuthMode, ChannelKind, CompressionMode, OnExceed, Publish, SlowConsumer};
use crate::auth::{
    Algorithm,
    permissions::Rooms,
    settings::{AbsentGrants, SourceKind},
};
pub(crate) use crate::variants::words;

/// An enum of unit variants written as a string in the file.
pub(crate) trait Keyword: DeserializeOwned + Copy {
    /// What a word of this enum is, for "\"x\" is not a {NOUN}".
    const NOUN: &'static str;

    /// A few words on what this word does, shown next to it in the list of
    /// valid words; `None` when the word says it all.
    fn meaning(self) -> Option<&'static str>;
}

/// A keyword as written: one serde knows, or the text of one it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Word<T> {
    /// A valid word.
    Known(T),
    /// Not a word of `T`, kept for the error message.
    Unknown(String),
}

impl<'de, T: Keyword> Deserialize<'de> for Word<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = T::deserialize(IntoDeserializer::<value::Error>::into_deserializer(
            text.as_str(),
        ));
        Ok(parsed.map_or(Self::Unknown(text), Self::Known))
    }
}

impl<T: Serialize> Serialize for Word<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Known(word) => word.serialize(serializer),
            Self::Unknown(text) => serializer.serialize_str(text),
        }
    }
}

/// The error for `text`, which is not a word of `T`: what it is not, and
/// which words would do.
pub(crate) fn unknown<T: Keyword>(text: &str) -> String {
    format!("{text:?} is not a {}; {}", T::NOUN, choices::<T>())
}

/// `use "a" (what it does) or "b" (what it does)`, every word of `T` in
/// declaration order.
pub(crate) fn choices<T: Keyword>() -> String {
    let listed: Vec<String> = words::<T>()
        .iter()
        .map(|word| {
            let meaning =
                T::deserialize(IntoDeserializer::<value::Error>::into_deserializer(*word))
                    .ok()
                    .and_then(Keyword::meaning);
            match meaning {
                Some(meaning) => format!("{word:?} ({meaning})"),
                None => format!("{word:?}"),
            }
        })
        .collect();
    match listed.split_last() {
        Some((last, [])) => format!("use {last}"),
        Some((last, rest)) => format!("use {} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl Keyword for ChannelKind {
    const NOUN: &'static str = "channel kind";

    fn meaning(self) -> Option<&'static str> {
        None
    }
}

impl Keyword for Publish {
    const NOUN: &'static str = "publish mode";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Clients => "clients and the API publish",
            Self::Api => "only the API publishes",
        })
    }
}

impl Keyword for SlowConsumer {
    const NOUN: &'static str = "slow-consumer policy";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Close => "close with 1013",
            Self::Drop => "drop what does not fit",
        })
    }
}

impl Keyword for OnExceed {
    const NOUN: &'static str = "policy";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Throttle => "stop reading until the rate allows",
            Self::Close => "close with 1008",
        })
    }
}

impl Keyword for CompressionMode {
    const NOUN: &'static str = "compression mode";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Shared => "compress once per message for everyone",
            Self::Dedicated => "one compressor per connection",
        })
    }
}

impl Keyword for Algorithm {
    const NOUN: &'static str = "JWT algorithm this server verifies";

    fn meaning(self) -> Option<&'static str> {
        None
    }
}

impl Keyword for SourceKind {
    const NOUN: &'static str = "token source";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Bearer => "the Authorization: Bearer header",
            Self::Cookie => "the cookie named by `cookie`",
            Self::Protocol => "the Sec-WebSocket-Protocol entry after `protocol_marker`",
            Self::Query => "the query parameter named by `query_parameter`",
            Self::FirstMessage => "an auth message right after the upgrade",
        })
    }
}

impl Keyword for AbsentGrants {
    const NOUN: &'static str = "policy for absent grants";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Deny => "a grant left out allows nothing",
            Self::AllowAll => "a grant left out allows everything",
        })
    }
}

impl Keyword for AuthMode {
    const NOUN: &'static str = "channel auth mode";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Required => "no valid identity, no connection",
            Self::Optional => "verified when given, anonymous otherwise",
            Self::None => "credentials are not looked at",
        })
    }
}

impl Keyword for Rooms {
    const NOUN: &'static str = "room ownership";

    fn meaning(self) -> Option<&'static str> {
        Some(match self {
            Self::Shared => "anyone the grants allow",
            Self::PerUser => "each room belongs to the user it is named after",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each word of `T` reads back as a variant that writes the same word.
    fn round_trips<T: Keyword + Serialize + std::fmt::Debug>() {
        let listed = words::<T>();
        assert!(!listed.is_empty(), "{} has words", T::NOUN);
        for word in listed {
            let value: T =
                T::deserialize(IntoDeserializer::<value::Error>::into_deserializer(*word))
                    .unwrap_or_else(|e| panic!("{word}: {e}"));
            let written = toml::Value::try_from(value).unwrap();
            assert_eq!(written.as_str(), Some(*word), "{value:?}");
        }
    }

    #[test]
    fn every_keyword_round_trips_through_serde() {
        round_trips::<ChannelKind>();
        round_trips::<Publish>();
        round_trips::<SlowConsumer>();
        round_trips::<OnExceed>();
        round_trips::<CompressionMode>();
        round_trips::<Algorithm>();
        round_trips::<SourceKind>();
        round_trips::<AbsentGrants>();
        round_trips::<AuthMode>();
        round_trips::<Rooms>();
    }

    #[test]
    fn words_are_the_serde_names_in_declaration_order() {
        assert_eq!(words::<ChannelKind>(), ["echo", "broadcast", "room", "hub"]);
        assert_eq!(words::<OnExceed>(), ["throttle", "close"]);
        assert_eq!(words::<Rooms>(), ["shared", "per_user"]);
        assert_eq!(words::<AbsentGrants>(), ["deny", "allow_all"]);
    }

    #[test]
    fn algorithm_names_are_their_alg_header_values() {
        let names: Vec<&str> = Algorithm::ALL.iter().map(|alg| alg.name()).collect();
        assert_eq!(
            names,
            [
                "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384",
                "EdDSA"
            ]
        );
        assert_eq!(words::<Algorithm>(), names, "ALL is in declaration order");
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Algorithm::from_name("hs256"), None, "case-sensitive");
    }

    #[test]
    fn source_labels_are_the_words_of_sources() {
        use crate::auth::TokenSource;
        let labels: Vec<&str> = [
            TokenSource::Bearer,
            TokenSource::Cookie("c".into()),
            TokenSource::Protocol("p".into()),
            TokenSource::Query("q".into()),
            TokenSource::FirstMessage,
        ]
        .iter()
        .map(TokenSource::label)
        .collect();
        assert_eq!(labels, words::<SourceKind>());
        assert_eq!(
            labels,
            ["bearer", "cookie", "protocol", "query", "first_message"]
        );
    }

    #[test]
    fn an_unknown_word_is_kept_and_explained() {
        let word: Word<ChannelKind> = Word::deserialize(
            IntoDeserializer::<value::Error>::into_deserializer("fanout"),
        )
        .unwrap();
        assert_eq!(word, Word::Unknown("fanout".to_owned()));
        assert_eq!(
            unknown::<ChannelKind>("fanout"),
            r#""fanout" is not a channel kind; use "echo", "broadcast", "room" or "hub""#
        );
        assert_eq!(
            unknown::<SlowConsumer>("later"),
            r#""later" is not a slow-consumer policy; use "close" (close with 1013) or "drop" (drop what does not fit)"#
        );
    }

    #[test]
    fn words_are_case_sensitive() {
        let word: Word<Publish> =
            Word::deserialize(IntoDeserializer::<value::Error>::into_deserializer("API")).unwrap();
        assert_eq!(word, Word::Unknown("API".to_owned()));
    }

    #[test]
    fn as_str_is_the_serde_word() {
        for kind in [
            ChannelKind::Echo,
            ChannelKind::Broadcast,
            ChannelKind::Room,
            ChannelKind::Hub,
        ] {
            assert_eq!(
                toml::Value::try_from(kind).unwrap().as_str(),
                Some(kind.as_str())
            );
        }
    }
}

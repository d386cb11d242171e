//! The words serde accepts for an enum, read from its derived
//! `Deserialize`: the configuration's keywords are spelled once, in the
//! `#[serde(rename...)]` of their enum, and every message, label and
//! printout that names them reads them from here.

use serde::{
    Deserializer,
    de::{self, DeserializeOwned, Visitor, value},
};

/// The words serde accepts for `T`, in declaration order.
///
/// The derived `Deserialize` of an enum hands the names of its variants to
/// `Deserializer::deserialize_enum`; this deserializer records them there
/// and reads nothing.
pub(crate) fn words<T: DeserializeOwned>() -> &'static [&'static str] {
    struct VariantNames(&'static [&'static str]);

    impl<'de> Deserializer<'de> for &mut VariantNames {
        type Error = value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not an enum"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = variants;
            Err(de::Error::custom(""))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    }

    let mut names = VariantNames(&[]);
    // The error is the point: the names were recorded on the way.
    let _ = T::deserialize(&mut names);
    names.0
}

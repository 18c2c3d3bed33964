//! Path and query parameters read by hand, so that a bad value gets the
//! operation's own JSON 400 naming the rule (poem's parameter errors are
//! terse), while the document still gives their type and bounds:
//! [`Page`] (`?page=`) and [`NewTaskId`] (the task id of routes that create).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseFromParameter, ParseResult, Type};

use super::error::ApiError;
use super::job_request::{self, MAX_TASK_ID, TASK_ID_PATTERN};

/// The largest page number: beyond it no listing can have a page
/// (`PAGINATION_PER_PAGE` is at most 1000), and offsets stay far from
/// overflowing.
pub const MAX_PAGE: u64 = 100_000_000;

/// `?page=`: documented as an integer from 1 to [`MAX_PAGE`]; kept as sent
/// (`None` when given more than once) and read by [`Page::number`].
#[derive(Debug)]
pub struct Page(Option<String>);

impl Page {
    /// The page number (1 when absent), or a 400 saying the range.
    pub fn number(page: Option<&Self>, operation: &str) -> Result<u64, ApiError> {
        let Some(page) = page else {
            return Ok(1);
        };
        let Some(text) = page.0.as_deref() else {
            return Err(ApiError::bad_request(
                operation,
                "Tasks pagination page param may be given once.",
            ));
        };
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|p| (1..=MAX_PAGE).contains(p))
            .ok_or_else(|| {
                ApiError::bad_request(
                    operation,
                    format!(
                        "Tasks pagination page param should be a positive integer \
                         (from 1 to {MAX_PAGE})."
                    ),
                )
            })
    }
}

impl Type for Page {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Cow::Borrowed("integer(page)")
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new_with_format("integer", "int64");
        schema.minimum = Some(1.0);
        schema.maximum = Some(MAX_PAGE as f64);
        schema.default = Some(1.into());
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromParameter for Page {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(Some(value.to_owned())))
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(
        iter: I,
    ) -> ParseResult<Self> {
        let mut values = iter.into_iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Self::parse_from_parameter(value.as_ref()),
            (None, _) => Ok(Self(Some(String::new()))),
            (Some(_), Some(_)) => Ok(Self(None)),
        }
    }
}

/// The task id of a route that creates a job: documented with its pattern;
/// kept as sent and checked by [`NewTaskId::checked`].
#[derive(Debug)]
pub struct NewTaskId(pub String);

impl NewTaskId {
    /// The id, or a 400 naming the task id rule.
    pub fn checked(&self, operation: &str) -> Result<&str, ApiError> {
        job_request::task_id(&self.0)
            .map(|()| self.0.as_str())
            .map_err(|message| ApiError::bad_request(operation, message))
    }
}

impl Type for NewTaskId {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Cow::Borrowed("string(task-id)")
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.min_length = Some(1);
        schema.max_length = Some(MAX_TASK_ID);
        schema.pattern = Some(TASK_ID_PATTERN.to_owned());
        schema.example = Some("hello-world".into());
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromParameter for NewTaskId {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(value.to_owned()))
    }
}

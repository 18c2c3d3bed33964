//! The language the job-request table ([`super::fields`]) is written in,
//! and the OpenAPI schema it turns into.
//!
//! A [`Schema`] is read twice: by [`super::check`], which refuses a body
//! that breaks it, and here, to register the same rules as OpenAPI schemas
//! (`JobRequest` and its nested objects). What OpenAPI 3.0 cannot say
//! through poem's `MetaSchema` (`additionalProperties: false`, the depth
//! and size of `metadata`) is added to the finished document by
//! [`finish_document`], from the same table.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use serde_json::Value;

use crate::api::ordered::Ordered;

/// A value's rules.
#[derive(Debug)]
pub struct Schema {
    /// Its type and bounds.
    pub kind: Kind,
    /// What a good value is, for error messages ("`retries` must be …");
    /// derived from `kind` when `None`.
    pub must: Option<&'static str>,
}

/// A type and its bounds.
#[derive(Debug)]
pub enum Kind {
    /// A string.
    Str(Str),
    /// A whole number (a float without a fraction is read as one).
    Int {
        /// Smallest accepted.
        min: i64,
        /// Largest accepted.
        max: i64,
    },
    /// A finite number.
    Num {
        /// Smallest accepted (or, when `exclusive_min`, the bound above it).
        min: f64,
        /// Whether `min` itself is refused.
        exclusive_min: bool,
        /// Largest accepted.
        max: f64,
    },
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A list.
    List {
        /// Each item's rules.
        items: &'static Schema,
        /// The most items.
        max: Max,
    },
    /// An object with keys of the caller's choosing.
    Map {
        /// Each key's rules.
        keys: &'static Str,
        /// Each value's rules.
        values: &'static Schema,
        /// The most entries.
        max: usize,
    },
    /// An object with known fields and no others.
    Object(&'static Object),
    /// Any of these (tried in order).
    AnyOf(&'static [Schema]),
    /// Any JSON object, bounded in depth and size.
    Free {
        /// The deepest nesting of objects and lists, the object itself
        /// counting as 1.
        depth: usize,
        /// The most bytes of its compact JSON.
        bytes: usize,
    },
    /// `true` or `false`.
    Bool,
}

/// The rules of a string.
#[derive(Debug)]
pub struct Str {
    /// The fewest characters.
    pub min: usize,
    /// The most characters.
    pub max: usize,
    /// Refuses strings of white space only (`"must not be empty"`).
    pub non_blank: bool,
    /// A regular expression the whole string matches (anchored with `^…$`,
    /// read the same by ECMA-262 and Rust's `regex`).
    pub pattern: Option<&'static str>,
    /// `ipv4` or `ipv6`: the string parses as such an address.
    pub format: Option<&'static str>,
    /// A valid value, shown in the document.
    pub example: Option<&'static str>,
}

impl Str {
    /// A string of `min` to `max` characters, nothing else checked.
    pub const fn any(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            non_blank: false,
            pattern: None,
            format: None,
            example: None,
        }
    }
}

/// The bound of a list: a configurable limit (its default in the document).
#[derive(Debug, Clone, Copy)]
pub enum Max {
    /// `WEBHOOKS_MAX_PER_EVENT`.
    HooksPerEvent,
    /// `NOTIFY_MAX_ADDRESSES`.
    Addresses,
}

/// The configurable bounds of a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `WEBHOOKS_MAX_PER_EVENT`: hooks per event of one job.
    pub hooks_per_event: usize,
    /// `NOTIFY_MAX_ADDRESSES`: e-mail addresses of one job, all lists together.
    pub addresses: usize,
}

/// The default of `WEBHOOKS_MAX_PER_EVENT`.
pub const DEFAULT_HOOKS_PER_EVENT: usize = 20;
/// The default of `NOTIFY_MAX_ADDRESSES`.
pub const DEFAULT_ADDRESSES: usize = 50;

impl Default for Limits {
    fn default() -> Self {
        Self {
            hooks_per_event: DEFAULT_HOOKS_PER_EVENT,
            addresses: DEFAULT_ADDRESSES,
        }
    }
}

impl Max {
    /// The bound under `limits`.
    pub fn resolve(self, limits: &Limits) -> usize {
        match self {
            Self::HooksPerEvent => limits.hooks_per_event,
            Self::Addresses => limits.addresses,
        }
    }
}

/// An object with known fields (a component of the document).
#[derive(Debug)]
pub struct Object {
    /// Its component name.
    pub name: &'static str,
    /// Its description.
    pub doc: &'static str,
    /// Its fields, in the order they are checked.
    pub fields: &'static [Field],
    /// A valid instance, as JSON text, shown in the document.
    pub example: Option<&'static str>,
}

/// A field of an [`Object`].
#[derive(Debug)]
pub struct Field {
    /// Its JSON name.
    pub name: &'static str,
    /// Its description in the document.
    pub doc: &'static str,
    /// Whether it must be present (and not null).
    pub required: bool,
    /// Its rules.
    pub schema: Schema,
}

impl Object {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field names, comma-separated.
    pub fn names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Registers this object and the objects it holds as components.
    pub fn register(&'static self, registry: &mut Registry) {
        registry.create_schema::<(), _>(self.name.to_owned(), |registry| {
            let mut schema = MetaSchema::new("object");
            schema.description = Some(self.doc);
            schema.example = self.example.and_then(|e| serde_json::from_str(e).ok());
            schema.required = self
                .fields
                .iter()
                .filter(|f| f.required)
                .map(|f| f.name)
                .collect();
            schema.properties = self
                .fields
                .iter()
                .map(|f| (f.name, f.schema.meta(Some(f.doc), registry)))
                .collect();
            schema
        });
    }

    /// A reference to this object's component.
    pub fn reference(&self) -> MetaSchemaRef {
        MetaSchemaRef::Reference(self.name.to_owned())
    }
}

impl Schema {
    /// What a good value is, for error messages.
    pub fn must(&self) -> String {
        if let Some(must) = self.must {
            return must.to_owned();
        }
        match &self.kind {
            Kind::Str(_) => "a string".to_owned(),
            Kind::Int { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Num {
                min,
                exclusive_min: false,
                max,
            } => format!("a number from {min} to {max}"),
            Kind::Num { min, max, .. } => format!("a number above {min}, at most {max}"),
            Kind::Enum(values) => format!("one of {}", values.join(", ")),
            Kind::List { .. } => "a list".to_owned(),
            Kind::Map { .. } | Kind::Object(_) | Kind::Free { .. } => "a JSON object".to_owned(),
            Kind::AnyOf(schemas) => schemas
                .iter()
                .map(Schema::must)
                .collect::<Vec<_>>()
                .join(" or "),
            Kind::Bool => "true or false".to_owned(),
        }
    }

    /// This schema as OpenAPI, its objects registered in `registry`.
    pub fn meta(
        &'static self,
        doc: Option<&'static str>,
        registry: &mut Registry,
    ) -> MetaSchemaRef {
        let mut schema = match &self.kind {
            Kind::Object(object) => {
                object.register(registry);
                let mut schema = MetaSchema::ANY;
                schema.all_of = vec![object.reference()];
                schema
            }
            kind => inline(kind, registry),
        };
        schema.description = doc;
        MetaSchemaRef::Inline(Box::new(schema))
    }
}

/// The schema of a kind other than an object.
fn inline(kind: &'static Kind, registry: &mut Registry) -> MetaSchema {
    match kind {
        Kind::Str(rules) => rules.meta(),
        Kind::Int { min, max } => {
            let mut schema = MetaSchema::new_with_format("integer", "int64");
            schema.minimum = Some(*min as f64);
            schema.maximum = Some(*max as f64);
            schema
        }
        Kind::Num {
            min,
            exclusive_min,
            max,
        } => {
            let mut schema = MetaSchema::new_with_format("number", "double");
            schema.minimum = Some(*min);
            schema.exclusive_minimum = exclusive_min.then_some(true);
            schema.maximum = Some(*max);
            schema
        }
        Kind::Enum(values) => {
            let mut schema = MetaSchema::new("string");
            schema.enum_items = values.iter().map(|v| Value::from(*v)).collect();
            schema
        }
        Kind::Bool => MetaSchema::new("boolean"),
        Kind::List { items, max } => {
            let mut schema = MetaSchema::new("array");
            schema.items = Some(Box::new(items.meta(None, registry)));
            schema.max_items = Some(max.resolve(&Limits::default()));
            schema
        }
        // OpenAPI 3.0 has no `propertyNames`: the rules of keys are in
        // the field's description.
        Kind::Map {
            keys: _,
            values,
            max,
        } => {
            let mut schema = MetaSchema::new("object");
            schema.additional_properties = Some(Box::new(values.meta(None, registry)));
            schema.max_properties = Some(*max);
            schema
        }
        Kind::Free { .. } => {
            let mut schema = MetaSchema::new("object");
            schema.additional_properties =
                Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY))));
            schema
        }
        Kind::AnyOf(schemas) => {
            let mut schema = MetaSchema::ANY;
            schema.any_of = schemas.iter().map(|s| s.meta(None, registry)).collect();
            schema
        }
        Kind::Object(object) => {
            object.register(registry);
            let mut schema = MetaSchema::ANY;
            schema.all_of = vec![object.reference()];
            schema
        }
    }
}

impl Str {
    fn meta(&self) -> MetaSchema {
        let mut schema = match self.format {
            Some(format) => MetaSchema::new_with_format("string", format),
            None => MetaSchema::new("string"),
        };
        // No `minLength: 0`: it says nothing, and generated clients check it.
        schema.min_length = (self.min > 0).then_some(self.min);
        schema.max_length = Some(self.max);
        schema.pattern = self.pattern.map(str::to_owned);
        schema.example = self.example.map(Value::from);
        schema
    }
}

/// Adds to the document what poem's schemas cannot hold: every object of
/// `root` refuses unknown fields (`additionalProperties: false`), and each
/// free-form field carries its bounds as `x-maxDepth` and `x-maxBytes`.
pub fn finish_document(document: &mut Ordered, root: &'static Object) {
    fn visit(document: &mut Ordered, object: &'static Object) {
        let component = document
            .get_mut("components")
            .and_then(|c| c.get_mut("schemas"))
            .and_then(|s| s.get_mut(object.name));
        let Some(component) = component else {
            return;
        };
        component.set("additionalProperties", Ordered::Bool(false));
        for field in object.fields {
            if let Kind::Free { depth, bytes } = field.schema.kind
                && let Some(property) = component
                    .get_mut("properties")
                    .and_then(|p| p.get_mut(field.name))
            {
                property.set("x-maxDepth", depth.into());
                property.set("x-maxBytes", bytes.into());
            }
        }
        for field in object.fields {
            for nested in objects_in(&field.schema) {
                visit(document, nested);
            }
        }
    }
    visit(document, root);
}

/// The objects a schema holds, at any depth but not through other objects.
fn objects_in(schema: &'static Schema) -> Vec<&'static Object> {
    match &schema.kind {
        Kind::Object(object) => vec![object],
        Kind::List { items, .. } => objects_in(items),
        Kind::Map { values, .. } => objects_in(values),
        Kind::AnyOf(schemas) => schemas.iter().flat_map(objects_in).collect(),
        _ => Vec::new(),
    }
}

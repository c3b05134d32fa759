//! QEMU's QObject input visitor (`qapi/qobject-input-visitor.c`) driven by
//! the schema: checks a request against a QAPI type and reports the first
//! problem exactly as QEMU words it.
//!
//! Members are visited in schema order (base members first, then the
//! branch a union's tag selects); a struct's unexpected members are reported
//! only after all its members were visited, and the one named is the first
//! left in GLib's hash table ([`GHashSet`]).  In keyval mode
//! (command-line `key=value` syntax) every scalar arrives as a string and is
//! converted per the schema type.

use crate::ghash::GHashSet;
use crate::keyval::{strtod_finite, strtoi64, strtosz, strtou64};
use crate::schema::{Builtin, IntKind, Schema, TypeDef};
use crate::utf8::to_modified_utf8;
use crate::value::{QDict, QObject};

/// How scalars are represented in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// JSON (QMP, or `--blockdev '{...}'`): scalars have JSON types.
    Json,
    /// keyval (`--blockdev driver=raw,...`): every scalar is a string.
    Keyval,
}

struct Frame {
    /// This container's name in its parent.
    name: Option<String>,
    /// `Some(index)` for a list, `None` for an object.
    list_index: Option<usize>,
    /// An object's members not visited yet.
    unvisited: Option<GHashSet>,
}

/// Where the value being visited lives.
#[derive(Clone, Copy)]
enum Parent<'a> {
    Root(&'a QObject),
    Dict(&'a QDict),
    Item(&'a QObject),
}

pub(crate) struct Visitor<'s> {
    schema: &'s Schema,
    mode: Mode,
    stack: Vec<Frame>,
}

type VResult<T> = Result<T, String>;

/// Visits `value` as type `ty` (the root object of a command or option) and
/// returns it normalised: same member order, scalars converted (keyval) or
/// widened (`uint64` of a negative number wraps, as in QEMU).
pub(crate) fn visit_root(ty: Option<&str>, value: &QObject, mode: Mode) -> VResult<QObject> {
    let mut v = Visitor {
        schema: Schema::get(),
        mode,
        stack: Vec::new(),
    };
    match ty {
        Some(ty) => v.visit(ty, None, Parent::Root(value)),
        None => {
            // A command without arguments: an empty struct.
            v.start_struct(None, Parent::Root(value))?;
            v.check_struct()?;
            Ok(QObject::Dict(QDict::new()))
        }
    }
}

impl<'s> Visitor<'s> {
    fn full_name(&self, name: Option<&str>) -> String {
        let mut err = String::new();
        let mut name = name.map(str::to_string);
        for frame in self.stack.iter().rev() {
            match frame.list_index {
                None => err = format!(".{}{}", name.as_deref().unwrap_or("<anonymous>"), err),
                Some(i) if self.mode == Mode::Keyval => err = format!(".{i}{err}"),
                Some(i) => err = format!("[{i}]{err}"),
            }
            name = frame.name.clone();
        }
        match name {
            Some(n) => format!("{n}{err}"),
            None if err.starts_with('.') => err[1..].to_string(),
            None if err.is_empty() => "<anonymous>".to_string(),
            None => err,
        }
    }

    fn try_get<'a>(
        &mut self,
        parent: Parent<'a>,
        name: Option<&str>,
        consume: bool,
    ) -> Option<&'a QObject> {
        match parent {
            Parent::Root(v) | Parent::Item(v) => Some(v),
            Parent::Dict(d) => {
                let key = name.expect("members have names");
                let v = d.get(key);
                if consume && v.is_some() {
                    if let Some(set) = self.stack.last_mut().and_then(|f| f.unvisited.as_mut()) {
                        set.remove(&to_modified_utf8(key));
                    }
                }
                v
            }
        }
    }

    fn get<'a>(
        &mut self,
        parent: Parent<'a>,
        name: Option<&str>,
        consume: bool,
    ) -> VResult<&'a QObject> {
        match self.try_get(parent, name, consume) {
            Some(v) => Ok(v),
            None => Err(format!("Parameter '{}' is missing", self.full_name(name))),
        }
    }

    fn type_error(&self, name: Option<&str>, expected: &str) -> String {
        format!(
            "Invalid parameter type for '{}', expected: {}",
            self.full_name(name),
            expected
        )
    }

    fn visit(&mut self, ty: &str, name: Option<&str>, parent: Parent<'_>) -> VResult<QObject> {
        if let Some(builtin) = Schema::builtin(ty) {
            return self.visit_builtin(builtin, name, parent);
        }
        let schema = self.schema;
        match schema.def(ty) {
            TypeDef::Builtin {} => unreachable!("builtins are handled above"),
            TypeDef::Enum { values } => self.visit_enum(values, name, parent),
            TypeDef::Array { element } => self.visit_list(element, name, parent),
            TypeDef::Object { .. } => {
                let dict = self.start_struct(name, parent)?;
                let mut out = Vec::new();
                self.visit_members(ty, dict, &mut out)?;
                self.check_struct()?;
                self.stack.pop();
                Ok(QObject::Dict(in_input_order(dict, out)))
            }
            TypeDef::Alternate { members } => self.visit_alternate(ty, members, name, parent),
        }
    }

    fn start_struct<'a>(&mut self, name: Option<&str>, parent: Parent<'a>) -> VResult<&'a QDict> {
        let value = self.get(parent, name, true)?;
        let QObject::Dict(dict) = value else {
            return Err(self.type_error(name, "object"));
        };
        let mut unvisited = GHashSet::new();
        for (key, _) in dict.iter_qemu() {
            unvisited.insert(&to_modified_utf8(key));
        }
        self.stack.push(Frame {
            name: name.map(str::to_string),
            list_index: None,
            unvisited: Some(unvisited),
        });
        Ok(dict)
    }

    fn check_struct(&self) -> VResult<()> {
        let frame = self.stack.last().expect("inside a struct");
        match frame.unvisited.as_ref().and_then(GHashSet::first) {
            Some(key) => {
                let key = crate::utf8::decode_lossy(key);
                Err(format!(
                    "Parameter '{}' is unexpected",
                    self.full_name(Some(&key))
                ))
            }
            None => Ok(()),
        }
    }

    fn visit_members(
        &mut self,
        ty: &str,
        dict: &QDict,
        out: &mut Vec<(String, QObject)>,
    ) -> VResult<()> {
        let schema = self.schema;
        let TypeDef::Object {
            members,
            tag,
            variants,
        } = schema.def(ty)
        else {
            panic!("{ty} is not an object type");
        };
        for m in members {
            if m.optional && !dict.contains_key(&m.name) {
                continue;
            }
            let value = self.visit(&m.ty, Some(&m.name), Parent::Dict(dict))?;
            out.push((m.name.clone(), value));
        }
        if let Some(tag) = tag {
            let case = out
                .iter()
                .find(|(k, _)| k == tag)
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string);
            if let Some(variant) = case.and_then(|c| variants.iter().find(|v| v.case == c)) {
                self.visit_members(&variant.ty, dict, out)?;
            }
        }
        Ok(())
    }

    fn visit_list(
        &mut self,
        element: &str,
        name: Option<&str>,
        parent: Parent<'_>,
    ) -> VResult<QObject> {
        let value = self.get(parent, name, true)?;
        let QObject::List(items) = value else {
            return Err(self.type_error(name, "array"));
        };
        self.stack.push(Frame {
            name: name.map(str::to_string),
            list_index: Some(0),
            unvisited: None,
        });
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            self.stack.last_mut().expect("list frame").list_index = Some(i);
            out.push(self.visit(element, None, Parent::Item(item))?);
        }
        self.stack.pop();
        Ok(QObject::List(out))
    }

    fn visit_alternate(
        &mut self,
        ty: &str,
        members: &[String],
        name: Option<&str>,
        parent: Parent<'_>,
    ) -> VResult<QObject> {
        let value = self.get(parent, name, false)?;
        let wanted = json_kind(value);
        let schema = self.schema;
        for member in members {
            if self.kind_of(member) != wanted {
                continue;
            }
            if let TypeDef::Object { .. } = schema
                .types
                .get(member.as_str())
                .unwrap_or(&TypeDef::Builtin {})
            {
                let dict = self.start_struct(name, parent)?;
                let mut out = Vec::new();
                self.visit_members(member, dict, &mut out)?;
                self.check_struct()?;
                self.stack.pop();
                return Ok(QObject::Dict(in_input_order(dict, out)));
            }
            return self.visit(member, name, parent);
        }
        Err(format!(
            "Invalid parameter type for '{}', expected: {}",
            name.unwrap_or("null"),
            ty
        ))
    }

    fn kind_of(&self, ty: &str) -> JsonKind {
        kind_of(self.schema, ty)
    }

    fn visit_enum(
        &mut self,
        values: &[String],
        name: Option<&str>,
        parent: Parent<'_>,
    ) -> VResult<QObject> {
        let QObject::Str(s) = self.visit_builtin(Builtin::Str, name, parent)? else {
            unreachable!("strings visit as strings")
        };
        if values.contains(&s) {
            Ok(QObject::Str(s))
        } else {
            Err(format!(
                "Parameter '{}' does not accept value '{}'",
                name.unwrap_or("null"),
                s
            ))
        }
    }

    /// `qobject_input_get_keyval`: a keyval scalar must be a string.
    fn keyval_str<'a>(&mut self, name: Option<&str>, parent: Parent<'a>) -> VResult<&'a str> {
        match self.get(parent, name, true)? {
            QObject::Str(s) => Ok(s),
            QObject::Dict(_) | QObject::List(_) => Err(format!(
                "Parameters '{}.*' are unexpected",
                self.full_name(name)
            )),
            _ => Err(format!(
                "Internal error: parameter {} invalid",
                self.full_name(name)
            )),
        }
    }

    fn visit_builtin(
        &mut self,
        builtin: Builtin,
        name: Option<&str>,
        parent: Parent<'_>,
    ) -> VResult<QObject> {
        match (builtin, self.mode) {
            (Builtin::Any, _) => Ok(self.get(parent, name, true)?.clone()),
            (Builtin::Null, _) => match self.get(parent, name, true)? {
                QObject::Null => Ok(QObject::Null),
                _ => Err(self.type_error(name, "null")),
            },
            (Builtin::Str, Mode::Json) => match self.get(parent, name, true)? {
                QObject::Str(s) => Ok(QObject::Str(s.clone())),
                _ => Err(self.type_error(name, "string")),
            },
            (Builtin::Str, Mode::Keyval) => {
                Ok(QObject::Str(self.keyval_str(name, parent)?.to_string()))
            }
            (Builtin::Bool, Mode::Json) => match self.get(parent, name, true)? {
                QObject::Bool(b) => Ok(QObject::Bool(*b)),
                _ => Err(self.type_error(name, "boolean")),
            },
            // qapi_bool_parse(): on/yes/true/y and off/no/false/n.
            (Builtin::Bool, Mode::Keyval) => match self.keyval_str(name, parent)? {
                "on" | "yes" | "true" | "y" => Ok(QObject::Bool(true)),
                "off" | "no" | "false" | "n" => Ok(QObject::Bool(false)),
                _ => Err(format!(
                    "Parameter '{}' expects 'on' or 'off'",
                    self.full_name(name)
                )),
            },
            (Builtin::Number, Mode::Json) => match self.get(parent, name, true)? {
                QObject::Int(i) => Ok(QObject::Double(*i as f64)),
                QObject::Uint(u) => Ok(QObject::Double(*u as f64)),
                QObject::Double(d) => Ok(QObject::Double(*d)),
                _ => Err(self.type_error(name, "number")),
            },
            (Builtin::Number, Mode::Keyval) => {
                let s = self.keyval_str(name, parent)?;
                strtod_finite(s)
                    .map(QObject::Double)
                    .ok_or_else(|| self.type_error(name, "number"))
            }
            (Builtin::Int(kind), _) => self.visit_int(kind, name, parent),
        }
    }

    fn visit_int(
        &mut self,
        kind: IntKind,
        name: Option<&str>,
        parent: Parent<'_>,
    ) -> VResult<QObject> {
        let short = name.unwrap_or("null");
        match kind {
            IntKind::Int64 | IntKind::Signed { .. } => {
                let value = self.read_i64(name, parent)?;
                if let IntKind::Signed { bits } = kind {
                    let max = (1i64 << (bits - 1)) - 1;
                    if value < -max - 1 || value > max {
                        return Err(format!("Parameter '{short}' expects int{bits}_t"));
                    }
                }
                Ok(QObject::Int(value))
            }
            IntKind::Uint64 | IntKind::Unsigned { .. } | IntKind::Size => {
                let value = self.read_u64(name, parent, kind == IntKind::Size)?;
                if let IntKind::Unsigned { bits } = kind {
                    if value > (1u64 << bits) - 1 {
                        return Err(format!("Parameter '{short}' expects uint{bits}_t"));
                    }
                }
                Ok(i64::try_from(value)
                    .map(QObject::Int)
                    .unwrap_or(QObject::Uint(value)))
            }
        }
    }

    fn read_i64(&mut self, name: Option<&str>, parent: Parent<'_>) -> VResult<i64> {
        match self.mode {
            Mode::Json => match self.get(parent, name, true)? {
                QObject::Int(i) => Ok(*i),
                _ => Err(self.type_error(name, "integer")),
            },
            Mode::Keyval => {
                let s = self.keyval_str(name, parent)?;
                strtoi64(s)
                    .ok_or_else(|| format!("Parameter '{}' expects integer", self.full_name(name)))
            }
        }
    }

    fn read_u64(&mut self, name: Option<&str>, parent: Parent<'_>, size: bool) -> VResult<u64> {
        match self.mode {
            Mode::Json => match self.get(parent, name, true)? {
                QObject::Int(i) => Ok(*i as u64),
                QObject::Uint(u) => Ok(*u),
                _ => Err(format!(
                    "Parameter '{}' expects uint64",
                    self.full_name(name)
                )),
            },
            Mode::Keyval if size => {
                let s = self.keyval_str(name, parent)?;
                strtosz(s)
                    .ok_or_else(|| format!("Parameter '{}' expects size", self.full_name(name)))
            }
            Mode::Keyval => {
                let s = self.keyval_str(name, parent)?;
                strtou64(s)
                    .ok_or_else(|| format!("Parameter '{}' expects integer", self.full_name(name)))
            }
        }
    }
}

/// The JSON kind an alternative accepts (QEMU's `alternate_qtype`).
fn kind_of(schema: &Schema, ty: &str) -> JsonKind {
    match Schema::builtin(ty) {
        Some(Builtin::Str) => JsonKind::Str,
        Some(Builtin::Bool) => JsonKind::Bool,
        Some(Builtin::Null) => JsonKind::Null,
        Some(Builtin::Number | Builtin::Int(_)) => JsonKind::Num,
        Some(Builtin::Any) => JsonKind::Any,
        None => match schema.def(ty) {
            TypeDef::Enum { .. } => JsonKind::Str,
            TypeDef::Array { .. } => JsonKind::List,
            TypeDef::Object { .. } => JsonKind::Dict,
            TypeDef::Alternate { .. } | TypeDef::Builtin {} => JsonKind::Any,
        },
    }
}

/// Puts the members of `value` (of type `ty`) into schema order, recursively,
/// as QEMU's output visitor would have inserted them.  Members the schema
/// does not know keep their relative order after the known ones.
pub(crate) fn reorder(ty: &str, value: &mut QObject) {
    let schema = Schema::get();
    if Schema::builtin(ty).is_some() {
        return;
    }
    match (schema.def(ty), value) {
        (TypeDef::Array { element }, QObject::List(items)) => {
            items.iter_mut().for_each(|i| reorder(element, i))
        }
        (TypeDef::Object { .. }, QObject::Dict(dict)) => {
            let mut members = Vec::new();
            member_types(schema, ty, dict, &mut members);
            let mut out = QDict::new();
            for (name, mty) in members {
                if let Some(mut v) = dict.remove(&name) {
                    reorder(&mty, &mut v);
                    out.insert(name, v);
                }
            }
            for (k, v) in dict.iter_inserted() {
                out.insert(k, v.clone());
            }
            *dict = out;
        }
        (TypeDef::Alternate { members }, value) => {
            let kind = json_kind(value);
            if let Some(m) = members.iter().find(|m| kind_of(schema, m) == kind) {
                reorder(m, value);
            }
        }
        _ => {}
    }
}

/// The members of object type `ty` (with the branch `dict`'s tag selects).
fn member_types(schema: &Schema, ty: &str, dict: &QDict, out: &mut Vec<(String, String)>) {
    let TypeDef::Object {
        members,
        tag,
        variants,
    } = schema.def(ty)
    else {
        return;
    };
    out.extend(members.iter().map(|m| (m.name.clone(), m.ty.clone())));
    let case = tag
        .as_deref()
        .and_then(|t| dict.get(t))
        .and_then(QObject::as_str);
    if let Some(v) = case.and_then(|c| variants.iter().find(|v| v.case == c)) {
        member_types(schema, &v.ty, dict, out);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JsonKind {
    Null,
    Bool,
    Num,
    Str,
    List,
    Dict,
    Any,
}

fn json_kind(v: &QObject) -> JsonKind {
    match v {
        QObject::Null => JsonKind::Null,
        QObject::Bool(_) => JsonKind::Bool,
        QObject::Int(_) | QObject::Uint(_) | QObject::Double(_) => JsonKind::Num,
        QObject::Str(_) => JsonKind::Str,
        QObject::List(_) => JsonKind::List,
        QObject::Dict(_) => JsonKind::Dict,
    }
}

/// The visited members, in the order the client wrote them.
fn in_input_order(input: &QDict, mut visited: Vec<(String, QObject)>) -> QDict {
    let mut out = QDict::new();
    for (key, _) in input.iter_inserted() {
        if let Some(pos) = visited.iter().position(|(k, _)| k == key) {
            let (k, v) = visited.swap_remove(pos);
            out.insert(k, v);
        }
    }
    out
}

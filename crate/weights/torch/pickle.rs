//! A restricted pickle machine for the state dicts `torch.save` writes
//! (protocol 2, a few opcodes of later protocols). It builds plain values
//! and never executes anything: the only globals it accepts are a whitelist
//! of torch's tensor-rebuilding functions, storage classes and
//! `collections.OrderedDict`, each interpreted here. Memo size, stack depth
//! and value nesting are bounded. The same machine reads the pickles of the
//! zip format (`data.pkl`) and the sequence of pickles of the legacy format.

use std::rc::Rc;

use super::super::{Result, WeightsError};

fn err(message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Header(format!("pickle: {message}"))
}

const MAX_MEMO: usize = 1 << 20;
const MAX_STACK: usize = 1 << 20;
const MAX_DEPTH: u32 = 64;

/// Element types of torch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageType {
    fn from_class(name: &str) -> Option<StorageType> {
        Some(match name {
            "FloatStorage" => StorageType::F32,
            "HalfStorage" => StorageType::F16,
            "BFloat16Storage" => StorageType::BF16,
            "DoubleStorage" => StorageType::F64,
            "LongStorage" => StorageType::I64,
            "IntStorage" => StorageType::I32,
            "ShortStorage" => StorageType::I16,
            "CharStorage" => StorageType::I8,
            "ByteStorage" => StorageType::U8,
            "BoolStorage" => StorageType::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            StorageType::F64 | StorageType::I64 => 8,
            StorageType::F32 | StorageType::I32 => 4,
            StorageType::F16 | StorageType::BF16 | StorageType::I16 => 2,
            StorageType::I8 | StorageType::U8 | StorageType::Bool => 1,
        }
    }

    /// Element `i` of little-endian bytes as f32 (the caller checked the bounds).
    pub fn value(self, b: &[u8], big_endian: bool) -> f32 {
        let mut a = [0u8; 8];
        let n = self.size();
        a[..n].copy_from_slice(&b[..n]);
        if big_endian {
            a[..n].reverse();
        }
        match self {
            StorageType::F32 => f32::from_le_bytes([a[0], a[1], a[2], a[3]]),
            StorageType::F16 => crate::weights::f16_to_f32(u16::from_le_bytes([a[0], a[1]])),
            StorageType::BF16 => f32::from_bits((u16::from_le_bytes([a[0], a[1]]) as u32) << 16),
            StorageType::F64 => f64::from_le_bytes(a) as f32,
            StorageType::I64 => i64::from_le_bytes(a) as f32,
            StorageType::I32 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f32,
            StorageType::I16 => i16::from_le_bytes([a[0], a[1]]) as f32,
            StorageType::I8 => a[0] as i8 as f32,
            StorageType::U8 => a[0] as f32,
            StorageType::Bool => (a[0] != 0) as u8 as f32,
        }
    }
}

/// A storage named by a persistent id: its bytes are `<archive>/data/<key>`
/// (zip format) or the key's record after the pickles (legacy format).
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    pub dtype: StorageType,
    pub key: String,
    /// Elements of the whole (root) storage.
    pub numel: u64,
    /// Legacy format only: the tensor sees `numel` elements of the root
    /// storage from `offset` on (`view_metadata` of the persistent id).
    pub view: Option<View>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub key: String,
    pub offset: u64,
    pub numel: u64,
}

/// A tensor view of a storage (offset, size and stride in elements).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub storage: Rc<Storage>,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

/// The globals a state dict may name; anything else is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TensorClass,
    ParameterClass,
    Storage(StorageType),
}

const ALLOWED: &str = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, \
                       torch.FloatStorage and the other storage classes";

fn global(module: &str, name: &str) -> Result<Global> {
    Ok(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") => Global::TensorClass,
        ("torch.nn.parameter", "Parameter") => Global::ParameterClass,
        // Files saved from a GPU name torch.cuda's storage classes (the location says where; the bytes are the same).
        ("torch" | "torch.cuda", n) if StorageType::from_class(n).is_some() => {
            Global::Storage(StorageType::from_class(n).unwrap_or(StorageType::F32))
        }
        _ => {
            return Err(err(format!(
                "refers to `{module}.{name}`, which a state dict never needs; nothing is executed, so the file is refused \
                 (allowed: {ALLOWED}). Save the model's state_dict() with torch.save"
            )))
        }
    })
}

#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as little-endian two's complement
    /// bytes (the legacy format's magic number is one).
    Long(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    /// Dicts and OrderedDicts, in insertion order.
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<Tensor>),
}

#[derive(Clone, Debug, Default)]
pub struct Seq {
    pub items: Vec<Value>,
    depth: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Map {
    pub items: Vec<(Value, Value)>,
    depth: u32,
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::Long(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class or function",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

fn seq(items: Vec<Value>) -> Result<Rc<Seq>> {
    let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
    if depth > MAX_DEPTH {
        return Err(err(format!("values nest deeper than {MAX_DEPTH} levels")));
    }
    Ok(Rc::new(Seq { items, depth }))
}

fn ints(v: &Value, what: &str) -> Result<Vec<u64>> {
    match v {
        Value::Tuple(s) | Value::List(s) => s
            .items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as u64),
                other => Err(err(format!("tensor {what} holds {} instead of a non-negative int", other.kind()))),
            })
            .collect(),
        other => Err(err(format!("tensor {what} is a {} instead of a tuple", other.kind()))),
    }
}

fn tensor_from(args: &[Value]) -> Result<Value> {
    let (storage, offset, size, stride) = match args {
        [Value::Storage(s), Value::Int(o), size, stride, ..] if *o >= 0 => (s.clone(), *o as u64, size, stride),
        _ => return Err(err("_rebuild_tensor_v2 expects (storage, offset, size, stride, …)")),
    };
    let size = ints(size, "size")?;
    let stride = ints(stride, "stride")?;
    if size.len() != stride.len() {
        return Err(err(format!("tensor size {size:?} and stride {stride:?} differ in length")));
    }
    Ok(Value::Tensor(Rc::new(Tensor { storage, offset, size, stride })))
}

fn call(g: Global, args: &Value) -> Result<Value> {
    let args: &[Value] = match args {
        Value::Tuple(s) => &s.items,
        other => return Err(err(format!("arguments of a call are a {} instead of a tuple", other.kind()))),
    };
    match g {
        Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Rc::new(Map { items: Vec::new(), depth: 1 }))),
        // Python 2's OrderedDict pickles as OrderedDict([[key, value], …]).
        Global::OrderedDict if args.len() == 1 => {
            let pairs = match &args[0] {
                Value::List(l) | Value::Tuple(l) => &l.items,
                other => return Err(err(format!("OrderedDict of a {} instead of a list of pairs", other.kind()))),
            };
            let mut m = Map { items: Vec::with_capacity(pairs.len()), depth: 1 };
            let mut flat = Vec::with_capacity(pairs.len() * 2);
            for p in pairs {
                match p {
                    Value::List(kv) | Value::Tuple(kv) if kv.items.len() == 2 => flat.extend(kv.items.iter().cloned()),
                    other => return Err(err(format!("OrderedDict item is a {} instead of a (key, value) pair", other.kind()))),
                }
            }
            set_items(&mut m, flat)?;
            Ok(Value::Dict(Rc::new(m)))
        }
        Global::RebuildTensorV2 | Global::RebuildTensor => tensor_from(args),
        Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err(err("_rebuild_parameter expects a tensor first")),
        },
        Global::RebuildFromTypeV2 => match args {
            [Value::Global(f), Value::Global(Global::TensorClass | Global::ParameterClass), inner, ..] => call(*f, inner),
            _ => Err(err("_rebuild_from_type_v2 expects (function, torch.Tensor or Parameter, arguments, state)")),
        },
        other => Err(err(format!("{other:?} cannot be called with {} arguments here", args.len()))),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self.p.checked_add(n).and_then(|e| self.b.get(self.p..e)).ok_or_else(|| WeightsError::Truncated {
            what: "pickle".into(),
            needed: self.p as u64 + n as u64,
            available: self.b.len() as u64,
        })?;
        self.p += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = self.b.get(self.p..).unwrap_or(&[]);
        let n = rest.iter().position(|&c| c == b'\n').ok_or_else(|| err("GLOBAL name is not terminated by a newline"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| err("GLOBAL name is not UTF-8"))?;
        self.p += n + 1;
        Ok(s)
    }

    fn text(&mut self, n: u64) -> Result<Rc<str>> {
        let n = usize::try_from(n).map_err(|_| err("string length overflows"))?;
        let s = self.take(n)?;
        Ok(Rc::from(std::str::from_utf8(s).map_err(|_| err(format!("string at byte {} is not UTF-8", self.p - n)))?))
    }
}

/// Run the pickle in `data` and return the value it builds. Persistent ids
/// (torch's `('storage', type, key, location, numel)`) become storages.
pub fn load(data: &[u8]) -> Result<Value> {
    Ok(load_at(data, 0)?.value)
}

/// What one pickle of a sequence built.
pub struct Loaded {
    pub value: Value,
    /// The byte after its STOP opcode: where the next pickle starts.
    pub end: usize,
    /// Every persistent id it named, in order.
    pub storages: Vec<Rc<Storage>>,
}

/// Run the pickle that starts at byte `start` of `data`.
pub fn load_at(data: &[u8], start: usize) -> Result<Loaded> {
    let mut r = Reader { b: data, p: start };
    let mut storages: Vec<Rc<Storage>> = Vec::new();
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<Vec<Value>> = Vec::new();
    let mut memo: std::collections::HashMap<u32, Value> = std::collections::HashMap::new();
    // Copy-on-write of a container the memo also holds costs its length;
    // the total is bounded so that no pickle can make this quadratic.
    let mut copy_budget: usize = data.len().saturating_mul(4).saturating_add(1 << 20);
    let mut pay = |n: usize| -> Result<()> {
        copy_budget = copy_budget.checked_sub(n).ok_or_else(|| err("containers are copied too often (a pathological pickle)"))?;
        Ok(())
    };
    let pop = |stack: &mut Vec<Value>, op: &str| stack.pop().ok_or_else(|| err(format!("{op} on an empty stack")));
    loop {
        let at = r.p;
        let op = r.u8()?;
        if stack.len() > MAX_STACK || marks.len() > MAX_STACK {
            return Err(err(format!("stack grows past {MAX_STACK} entries")));
        }
        match op {
            0x80 => {
                let v = r.u8()?;
                if v > 5 {
                    return Err(err(format!("protocol {v} is unknown")));
                }
            }
            0x95 => {
                r.u64()?;
            }
            b'.' => {
                return match stack.pop() {
                    Some(value) if stack.is_empty() => Ok(Loaded { value, end: r.p, storages }),
                    Some(_) => Err(err("STOP with more than one value on the stack")),
                    None => Err(err("STOP on an empty stack")),
                }
            }
            b'(' => marks.push(std::mem::take(&mut stack)),
            b'0' => {
                pop(&mut stack, "POP")?;
            }
            b'1' => {
                stack = marks.pop().ok_or_else(|| err("POP_MARK without a MARK"))?;
            }
            b'2' => {
                let v = stack.last().cloned().ok_or_else(|| err("DUP on an empty stack"))?;
                stack.push(v);
            }
            b'}' => stack.push(Value::Dict(Rc::new(Map { items: Vec::new(), depth: 1 }))),
            b']' => stack.push(Value::List(seq(Vec::new())?)),
            b')' => stack.push(Value::Tuple(seq(Vec::new())?)),
            b't' | b'l' | b'd' => {
                let items = std::mem::replace(&mut stack, marks.pop().ok_or_else(|| err("TUPLE/LIST/DICT without a MARK"))?);
                let v = match op {
                    b't' => Value::Tuple(seq(items)?),
                    b'l' => Value::List(seq(items)?),
                    _ => {
                        let mut m = Map { items: Vec::new(), depth: 1 };
                        set_items(&mut m, items)?;
                        Value::Dict(Rc::new(m))
                    }
                };
                stack.push(v);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(err(format!("TUPLE{n} needs {n} values on the stack")));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(seq(items)?));
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    vec![pop(&mut stack, "APPEND")?]
                } else {
                    std::mem::replace(&mut stack, marks.pop().ok_or_else(|| err("APPENDS without a MARK"))?)
                };
                match stack.last_mut() {
                    Some(Value::List(l)) => {
                        if Rc::strong_count(l) > 1 {
                            pay(l.items.len())?;
                        }
                        let l = Rc::make_mut(l);
                        for v in items {
                            l.depth = l.depth.max(v.depth() + 1);
                            l.items.push(v);
                        }
                        if l.depth > MAX_DEPTH {
                            return Err(err(format!("values nest deeper than {MAX_DEPTH} levels")));
                        }
                    }
                    _ => return Err(err(format!("APPEND at byte {at} onto something that is not a list"))),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = pop(&mut stack, "SETITEM")?;
                    let k = pop(&mut stack, "SETITEM")?;
                    vec![k, v]
                } else {
                    std::mem::replace(&mut stack, marks.pop().ok_or_else(|| err("SETITEMS without a MARK"))?)
                };
                match stack.last_mut() {
                    Some(Value::Dict(m)) => {
                        if Rc::strong_count(m) > 1 {
                            pay(m.items.len())?;
                        }
                        set_items(Rc::make_mut(m), items)?
                    }
                    _ => return Err(err(format!("SETITEM at byte {at} onto something that is not a dict"))),
                }
            }
            b'J' => {
                let v = r.u32()? as i32;
                stack.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = r.u8()?;
                stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = r.u16()?;
                stack.push(Value::Int(v as i64));
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a { r.u8()? as usize } else { r.u32()? as usize };
                let s = r.take(n)?;
                if n > 8 {
                    stack.push(Value::Long(Rc::from(s)));
                    continue;
                }
                let mut a = [if s.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 }; 8];
                a[..n].copy_from_slice(s);
                stack.push(Value::Int(i64::from_le_bytes(a)));
            }
            b'G' => {
                let s = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                stack.push(Value::Float(f64::from_be_bytes(a)));
            }
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'X' | b'T' => {
                let n = r.u32()? as u64;
                stack.push(Value::Str(r.text(n)?));
            }
            0x8c | b'U' => {
                let n = r.u8()? as u64;
                stack.push(Value::Str(r.text(n)?));
            }
            0x8d => {
                let n = r.u64()?;
                stack.push(Value::Str(r.text(n)?));
            }
            b'B' | b'C' => {
                let n = if op == b'B' { r.u32()? as usize } else { r.u8()? as usize };
                stack.push(Value::Bytes(Rc::from(r.take(n)?)));
            }
            b'q' | b'r' | 0x94 => {
                let key = match op {
                    b'q' => r.u8()? as u32,
                    b'r' => r.u32()?,
                    _ => memo.len() as u32,
                };
                if memo.len() >= MAX_MEMO {
                    return Err(err(format!("memo grows past {MAX_MEMO} entries")));
                }
                let v = stack.last().cloned().ok_or_else(|| err("PUT on an empty stack"))?;
                memo.insert(key, v);
            }
            b'h' | b'j' => {
                let key = if op == b'h' { r.u8()? as u32 } else { r.u32()? };
                let v = memo.get(&key).cloned().ok_or_else(|| err(format!("GET of memo entry {key}, which was never PUT")))?;
                stack.push(v);
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(global(module, name)?));
            }
            0x93 => {
                let name = pop(&mut stack, "STACK_GLOBAL")?;
                let module = pop(&mut stack, "STACK_GLOBAL")?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(global(&m, &n)?)),
                    _ => return Err(err("STACK_GLOBAL needs two strings")),
                }
            }
            b'R' => {
                let args = pop(&mut stack, "REDUCE")?;
                let f = pop(&mut stack, "REDUCE")?;
                match f {
                    Value::Global(g) => stack.push(call(g, &args)?),
                    other => return Err(err(format!("REDUCE at byte {at} calls a {}", other.kind()))),
                }
            }
            b'b' => {
                // BUILD sets an object's state: for OrderedDict that is
                // `_metadata`, for tensors their Python attributes. Dropped.
                pop(&mut stack, "BUILD")?;
                if stack.is_empty() {
                    return Err(err("BUILD with no object"));
                }
            }
            b'Q' => {
                let pid = pop(&mut stack, "BINPERSID")?;
                let s = Rc::new(storage(&pid)?);
                if storages.len() >= MAX_MEMO {
                    return Err(err(format!("more than {MAX_MEMO} persistent ids")));
                }
                storages.push(s.clone());
                stack.push(Value::Storage(s));
            }
            other => {
                return Err(err(format!(
                    "opcode 0x{other:02x} ({:?}) at byte {at} is not one torch.save writes for a state dict",
                    other as char
                )))
            }
        }
    }
}

fn set_items(m: &mut Map, items: Vec<Value>) -> Result<()> {
    if !items.len().is_multiple_of(2) {
        return Err(err("SETITEMS with an odd number of values"));
    }
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        m.depth = m.depth.max(k.depth().max(v.depth()) + 1);
        if m.depth > MAX_DEPTH {
            return Err(err(format!("values nest deeper than {MAX_DEPTH} levels")));
        }
        m.items.push((k, v));
    }
    Ok(())
}

fn plain_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
        return Err(err(format!("storage key \"{key}\" is not a plain name")));
    }
    Ok(())
}

/// `('storage', torch.FloatStorage, '0', 'cpu', numel)` (zip format) or
/// `('storage', torch.FloatStorage, root_key, 'cpu', numel, view_metadata)`
/// (legacy format; view_metadata is None or `(view_key, offset, numel)`).
fn storage(pid: &Value) -> Result<Storage> {
    let items = match pid {
        Value::Tuple(s) => &s.items,
        other => return Err(err(format!("persistent id is a {} instead of a tuple", other.kind()))),
    };
    match items.as_slice() {
        [Value::Str(tag), ..] if &**tag == "module" => {
            Err(err("the file holds a pickled nn.Module (torch.save(model)); save model.state_dict() instead, which needs no code to load"))
        }
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel), rest @ ..]
            if &**tag == "storage" && *numel >= 0 && rest.len() <= 1 =>
        {
            plain_key(key)?;
            let view = match rest.first() {
                None | Some(Value::None) => None,
                Some(Value::Tuple(v)) => match v.items.as_slice() {
                    [Value::Str(vk), Value::Int(offset), Value::Int(n)] if *offset >= 0 && *n >= 0 => {
                        plain_key(vk)?;
                        Some(View { key: vk.to_string(), offset: *offset as u64, numel: *n as u64 })
                    }
                    _ => return Err(err("persistent id's view_metadata is not (key, offset, numel)")),
                },
                Some(other) => return Err(err(format!("persistent id's view_metadata is a {}", other.kind()))),
            };
            Ok(Storage { dtype: *dtype, key: key.to_string(), numel: *numel as u64, view })
        }
        _ => Err(err("persistent id is not ('storage', <storage class>, key, location, numel[, view])")),
    }
}

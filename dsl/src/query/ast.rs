//! The parsed, not yet type-checked, form of a query.

/// A whole query: one event filter or a sequence.
#[derive(Debug, Clone)]
pub enum Query {
    Event(EventQuery),
    Sequence(SequenceQuery),
}

/// `process where <expr>`; `category` is `None` for `any`.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub category: Option<(String, usize)>,
    pub condition: Expr,
}

#[derive(Debug, Clone)]
pub struct SequenceQuery {
    pub by: Vec<FieldRef>,
    pub maxspan_ns: Option<i64>,
    pub stages: Vec<Stage>,
    pub until: Option<Stage>,
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub query: EventQuery,
    pub by: Vec<FieldRef>,
    pub runs: u32,
    /// `] as event0`: later stages read this stage's event as `event0.field`.
    pub alias: Option<(String, usize)>,
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub struct FieldRef {
    pub path: String,
    /// `?field`: a field unknown to the schema is null instead of an error.
    pub optional: bool,
    pub offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The pattern-matching operators, each with its case rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `:` — case-insensitive wildcard.
    Colon,
    Like {
        insensitive: bool,
    },
    Regex {
        insensitive: bool,
    },
}

#[derive(Debug, Clone)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>, usize),
    Compare {
        lhs: Operand,
        op: CmpOp,
        rhs: Operand,
        offset: usize,
    },
    In {
        value: Operand,
        list: Vec<Operand>,
        insensitive: bool,
        negated: bool,
        offset: usize,
    },
    Match {
        value: Operand,
        op: MatchOp,
        patterns: Vec<Operand>,
        offset: usize,
    },
    /// A bare operand used as a condition (`process.code_signature.trusted`,
    /// `cidrmatch(...)`, `true`).
    Truthy(Operand),
    /// `descendant of [process where ...]`, `child of [...]`, `event of [...]`.
    Lineage {
        kind: LineageKind,
        query: Box<EventQuery>,
        offset: usize,
    },
}

/// How the event's process relates to a process the inner query matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineageKind {
    /// Its parent matched.
    Child,
    /// Some ancestor matched.
    Descendant,
    /// The process itself matched (in an earlier or this event).
    Event,
}

#[derive(Debug, Clone)]
pub enum Operand {
    Field(FieldRef),
    Str(String, usize),
    Int(i64, usize),
    Bool(bool, usize),
    Null(usize),
    Call {
        name: String,
        args: Vec<Operand>,
        offset: usize,
    },
}

impl Operand {
    pub fn offset(&self) -> usize {
        match self {
            Operand::Field(f) => f.offset,
            Operand::Str(_, o)
            | Operand::Int(_, o)
            | Operand::Bool(_, o)
            | Operand::Null(o)
            | Operand::Call { offset: o, .. } => *o,
        }
    }
}

//! Methods taking `**fields` that scripts call once per packet, called the way CPython calls its
//! own methods (`METH_FASTCALL | METH_KEYWORDS`): arguments straight from the caller's stack.
//!
//! pyo3 gives any method with `**kwargs` the tuple-and-dict convention: every call packs its
//! arguments into a tuple, and into a dict as soon as one keyword is passed, which pyo3 then
//! takes apart again. `PacketFormat.pack`, `Connection.send` and `Connection.request` are
//! written here instead: each is a plain Rust function over [`Args`], installed on its class
//! after pyo3 builds it, with its text signature and the stub's docstring.
// NOTE: `fmt.pack(body, msg_id=7)` on a `!IH` format with a 64-byte body took 198 ns through
// pyo3's convention (`fmt.pack(body, 7)`: 122 ns), against 94-99 ns for
// `hdr.pack(len(body), 7) + body`; building and taking apart the dict was ~80 ns of it. Through
// pyo3's fastcall convention (possible only without `**fields`) it took 116 / 84 ns, pyo3
// matching keyword names by comparing strings; here, matching interned names by pointer,
// 92 / 80 ns (timeit, best of 25 runs of 100k). For scale, CPython's own
// `n.to_bytes(4, byteorder='big')` takes 61 ns on this machine: most of what is left is the
// cost of any call with a keyword.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::Interned;
use pyo3::types::{PyString, PyTuple};
use pyo3::{PyClass, PyTypeInfo};

/// The arguments of one call: positional ones, then keyword values named by `kwnames`.
pub(crate) struct Args<'a, 'py> {
    py: Python<'py>,
    positional: &'a [*mut ffi::PyObject],
    kwnames: Option<Borrowed<'a, 'py, PyTuple>>,
    kwvalues: &'a [*mut ffi::PyObject],
}

/// A method's parameters before `**fields`: its name for messages, the parameter names, and
/// how many of them are required (the first ones). A `static`, so that the interned names are
/// made once.
pub(crate) struct Params<const N: usize> {
    pub(crate) method: &'static str,
    pub(crate) names: [&'static str; N],
    pub(crate) interned: [Interned; N],
    pub(crate) required: usize,
}

/// A [`Params`]: `params!("Class.method", ["a", "b"], required = 1)`.
macro_rules! params {
    ($method:literal, [$($name:literal),*], required = $required:literal) => {
        $crate::py::fastcall::Params {
            method: $method,
            names: [$($name),*],
            interned: [$(pyo3::sync::Interned::new($name)),*],
            required: $required,
        }
    };
}

/// The most parameters a method here names before `**fields`.
const MAX_NAMED: usize = 4;

/// The keywords a call passed beyond the named parameters: the header fields.
pub(crate) struct Fields<'a, 'py> {
    py: Python<'py>,
    names: Option<Borrowed<'a, 'py, PyTuple>>,
    values: &'a [*mut ffi::PyObject],
    /// For each named parameter, the position in `names` of the keyword that gave it
    /// (`usize::MAX`: not given by keyword).
    named: [usize; MAX_NAMED],
}

impl<'a, 'py> Args<'a, 'py> {
    /// Sorts the arguments into the named parameters (by position or keyword; `None` for one
    /// not given) and the remaining keywords, raising the `TypeError` Python raises for a
    /// missing, repeated or surplus argument.
    pub(crate) fn parse<const N: usize>(
        &self,
        params: &Params<N>,
    ) -> PyResult<([Option<Borrowed<'a, 'py, PyAny>>; N], Fields<'a, 'py>)> {
        const { assert!(N <= MAX_NAMED) };
        let py = self.py;
        // SAFETY: the pointers come from the call's argument array (see `trampoline`): live
        // objects, borrowed for the length of the call.
        let arg = |p: *mut ffi::PyObject| unsafe { Borrowed::from_ptr(py, p) };
        if self.positional.len() > N {
            return Err(PyTypeError::new_err(format!(
                "{}() takes from {} to {N} positional arguments but {} were given",
                params.method,
                params.required,
                self.positional.len()
            )));
        }
        let mut named: [Option<Borrowed<'a, 'py, PyAny>>; N] = [None; N];
        for (slot, &p) in named.iter_mut().zip(self.positional) {
            *slot = Some(arg(p));
        }
        let mut taken = [usize::MAX; MAX_NAMED];
        let mut extra = 0;
        if let Some(kwnames) = self.kwnames {
            for (i, name) in kwnames.iter_borrowed().enumerate() {
                // Keyword names in calls written out in code are interned, as are ours: the
                // pointers match. Other names are compared by value, as CPython does.
                let at = match params.interned.iter().position(|n| n.get(py).is(name)) {
                    Some(at) => at,
                    None => {
                        let name = name.cast::<PyString>()?;
                        let name = name.to_cow()?;
                        match params.names.iter().position(|n| *n == name) {
                            Some(at) => at,
                            None => {
                                extra += 1;
                                continue;
                            }
                        }
                    }
                };
                if named[at].is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "{}() got multiple values for argument '{}'",
                        params.method, params.names[at]
                    )));
                }
                named[at] = Some(arg(self.kwvalues[i]));
                taken[at] = i;
            }
        }
        if let Some(missing) = named[..params.required].iter().position(Option::is_none) {
            return Err(PyTypeError::new_err(format!(
                "{}() missing 1 required positional argument: '{}'",
                params.method, params.names[missing]
            )));
        }
        let fields = Fields {
            py,
            names: self.kwnames.filter(|_| extra > 0),
            values: self.kwvalues,
            named: taken,
        };
        Ok((named, fields))
    }
}

impl<'py> Fields<'_, 'py> {
    /// The header fields, as (name, value) pairs in the order the call gave them.
    pub(crate) fn iter(
        &self,
    ) -> impl Iterator<Item = PyResult<(Bound<'py, PyString>, Bound<'py, PyAny>)>> + '_ {
        let py = self.py;
        self.names
            .iter()
            .flat_map(|names| names.iter_borrowed().enumerate())
            .filter(|(i, _)| !self.named.contains(i))
            .map(move |(i, name)| {
                // SAFETY: `values` holds one borrowed value per name (see `trampoline`).
                let value = unsafe { Borrowed::from_ptr(py, self.values[i]) };
                Ok((name.cast::<PyString>()?.to_owned(), value.to_owned()))
            })
    }
}

/// An integer argument (`0` when not given), with the message pyo3 gives a bad one.
pub(crate) fn int_arg(arg: Option<Borrowed<'_, '_, PyAny>>, name: &str) -> PyResult<i64> {
    let Some(arg) = arg else { return Ok(0) };
    arg.extract::<i64>().map_err(|err| {
        let py = arg.py();
        if !err.is_instance_of::<PyTypeError>(py) {
            return err;
        }
        let remapped = PyTypeError::new_err(format!("argument '{name}': {}", err.value(py)));
        remapped.set_cause(py, err.cause(py));
        remapped
    })
}

/// The body of a fast method: the instance (already checked to be of the class) and the call's
/// arguments.
pub(crate) type Body<T> =
    for<'a, 'py> fn(&Bound<'py, T>, Args<'a, 'py>) -> PyResult<Bound<'py, PyAny>>;

/// Runs `body` for a call CPython made with the fastcall convention: errors are raised, and a
/// panic becomes `PanicException` rather than unwinding into CPython.
///
/// The thread is attached (CPython holds the GIL for the call). pyo3's own trampolines also
/// count the attachment for pyo3; this one does not, so bodies must not rely on that count:
/// they use `Bound`/`Borrowed` references (whose drops decrement at once) and never drop a
/// `Py<T>` they own, whose decrement pyo3 would otherwise defer to its next trampoline.
///
/// # Safety
/// Called by CPython only, with the arguments of a `METH_FASTCALL | METH_KEYWORDS` method whose
/// descriptor was made for class `T` (CPython checks `slf`'s type against it).
pub(crate) unsafe fn trampoline<T: PyClass>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    body: Body<T>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: CPython passes `nargs` positional arguments, then one value per name in
        // `kwnames` (a tuple of str, or NULL when there are no keywords), all borrowed.
        let slf = unsafe { Borrowed::from_ptr(py, slf) };
        // A method is called with a plain count (CPython masks the vectorcall offset flag).
        let nargs = nargs as usize;
        let kwnames = unsafe { Borrowed::from_ptr_or_opt(py, kwnames) }
            .map(|k| unsafe { k.cast_unchecked::<PyTuple>() });
        let nkw = kwnames.map_or(0, |k| k.len());
        let all: &[*mut ffi::PyObject] = if nargs + nkw == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(args, nargs + nkw) }
        };
        let args = Args {
            py,
            positional: &all[..nargs],
            kwnames,
            kwvalues: &all[nargs..],
        };
        let slf = slf.cast::<T>()?;
        body(&slf, args).map(Bound::into_ptr)
    }));
    match result {
        Ok(Ok(obj)) => obj,
        Ok(Err(err)) => {
            err.restore(py);
            ptr::null_mut()
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in sockwire".to_owned());
            PanicException::new_err(msg).restore(py);
            ptr::null_mut()
        }
    }
}

/// An `extern "C"` function for CPython that calls `trampoline::<T>` with `body`.
macro_rules! fastcall {
    ($class:ty, $body:path) => {{
        unsafe extern "C" fn method(
            slf: *mut pyo3::ffi::PyObject,
            args: *const *mut pyo3::ffi::PyObject,
            nargs: pyo3::ffi::Py_ssize_t,
            kwnames: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: installed by `install::<$class>`, so called by CPython as its contract says.
            unsafe { $crate::py::fastcall::trampoline::<$class>(slf, args, nargs, kwnames, $body) }
        }
        method as pyo3::ffi::PyCFunctionFastWithKeywords
    }};
}

/// Puts method `name` on class `T`: `signature` is its text signature after the name
/// (`"($self, body, msg_id=0, **fields)"`), `doc` its docstring.
pub(crate) fn install<T: PyClass + PyTypeInfo>(
    py: Python<'_>,
    name: &'static str,
    signature: &str,
    doc: &str,
    method: ffi::PyCFunctionFastWithKeywords,
) -> PyResult<()> {
    // CPython keeps pointers to the definition and its strings for the life of the method
    // object, which lives as long as the class: they are leaked once, at import.
    let c_name = CString::new(name).expect("method names have no NUL");
    let c_doc =
        CString::new(format!("{name}{signature}\n--\n\n{doc}")).expect("docstrings have no NUL");
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c_name.into_raw() as *const c_char,
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: method,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c_doc.into_raw() as *const c_char,
    }));
    let ty = py.get_type::<T>();
    // SAFETY: `def` lives forever; the descriptor makes CPython check `self` against `T`.
    let descr =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    ty.setattr(name, descr)
}

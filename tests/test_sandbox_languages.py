"""Compiled and interpreted languages: honest programs pass, exit-code laundering fails.

A language whose toolchain is missing here is skipped, and must then say `unavailable`.
"""

from __future__ import annotations

import time

import pytest

from _sandbox_util import wait_no_survivors
from coder_align.sandbox import check, find_bwrap, run, toolchain_available

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")

CASES = [{"stdin": "1 2", "stdout": "3"}, {"stdin": "40 2", "stdout": "42"}]

SUM = {
    "c": '#include <stdio.h>\nint main(){long a,b; if(scanf("%ld %ld",&a,&b)!=2) return 1; printf("%ld\\n",a+b); return 0;}',
    "cpp": '#include <iostream>\nint main(){long a,b; std::cin>>a>>b; std::cout<<a+b<<"\\n";}',
    "java": ('import java.util.*;\npublic class Main { public static void main(String[] x){ Scanner s=new Scanner(System.in);'
             ' System.out.println(s.nextLong()+s.nextLong()); } }'),
    "javascript": 'const l=require("fs").readFileSync(0,"utf8").trim().split(/\\s+/).map(Number); console.log(l[0]+l[1]);',
    "go": ('package main\nimport "fmt"\nfunc main(){ var a, b int64; fmt.Scan(&a, &b); fmt.Println(a+b) }'),
    "rust": ('use std::io::*; fn main(){ let mut s=String::new(); stdin().read_to_string(&mut s).unwrap();'
             ' let v:Vec<i64>=s.split_whitespace().map(|x|x.parse().unwrap()).collect(); println!("{}", v[0]+v[1]); }'),
    "bash": "read a b; echo $((a+b))",
}

# exit 0 without solving, printing what a naive harness might look for
LAUNDER = {
    "c": '#include <stdio.h>\n#include <stdlib.h>\nint main(){ puts("PASSED"); exit(0); }',
    "cpp": '#include <cstdlib>\n#include <iostream>\nint main(){ std::cout<<"All tests passed\\n"; std::quick_exit(0); }',
    "java": 'public class Main { public static void main(String[] a){ System.out.println("PASSED"); System.exit(0); } }',
    "javascript": 'console.log("PASSED"); process.exit(0);',
    "go": 'package main\nimport ("fmt"; "os")\nfunc main(){ fmt.Println("PASSED"); os.Exit(0) }',
    "rust": 'fn main(){ println!("PASSED"); std::process::exit(0); }',
    "bash": 'echo PASSED; exit 0',
}

HOSTILE_C = {
    "fork_bomb": "#include <unistd.h>\nint main(){ for(;;) fork(); }",
    "busy_loop": "int main(){ volatile unsigned long i=0; for(;;) i++; }",
    "daemon": ('#include <unistd.h>\nint main(){ if(fork()==0){ setsid(); if(fork()==0){ sleep(60); } _exit(0);} '
               'return 0; }'),
    "segfault": "int main(){ return *(volatile int*)0; }",
    "memory_bomb": '#include <stdlib.h>\n#include <string.h>\nint main(){ for(;;){ char*p=malloc(1<<26); if(!p) return 3; memset(p,1,1<<26);} }',
}


def _need(language):
    if not toolchain_available(language):
        pytest.skip(f"{language} toolchain not installed")


@pytest.mark.parametrize("language", sorted(SUM))
def test_honest_program_passes_and_laundering_fails(language):
    _need(language)
    assert check(SUM[language], CASES, language=language).passed
    report = check(LAUNDER[language], CASES, language=language)
    assert not report.passed and report.status == "wrong_answer", report


@pytest.mark.parametrize("language", ["c", "cpp", "java", "javascript", "go", "rust"])
def test_compile_errors(language):
    _need(language)
    report = check("this is not a program {", CASES, language=language)
    assert report.status == "compile_error" and not report.passed


def test_bash_syntax_error():
    assert check("if then fi (", CASES, language="bash").status == "compile_error"


@pytest.mark.parametrize("name", sorted(HOSTILE_C))
def test_hostile_c(name):
    _need("c")
    t0 = time.monotonic()
    result = run(HOSTILE_C[name], language="c", timeout=2.0, memory_mb=256)
    assert time.monotonic() - t0 < 2.0 + 3.0 + 1.0  # + compile time
    assert result.status != "ok" or name == "daemon"
    assert wait_no_survivors() == []


def test_missing_toolchain_is_unavailable(monkeypatch):
    from coder_align.sandbox import languages

    monkeypatch.setitem(languages.LANGUAGES, "c", languages.Language("c", "main.c", "no-such-cc-xyz", ["no-such-cc-xyz"], ["/box/main"]))
    result = run("int main(){}", language="c")
    assert result.status == "unavailable" and "no-such-cc-xyz" in result.stderr

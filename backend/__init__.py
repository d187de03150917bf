"""Hehe's back end. Importing it first arranges for aiogram to import without building all of
its schemas up front (bot/lazy_aiogram.py: seconds of cold start)."""
from bot import lazy_aiogram

lazy_aiogram.install()
